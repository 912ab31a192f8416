// Command family: what any worker may ask any gateway to do with any WSID it holds.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sb::proto {

// One payload to one or many sockets.
struct Write {
  std::vector<std::string> targets;
  bool binary = false;
  std::string payload;
  // Non-empty: the gateway delivers a key once; a repeat (a re-processed event after a worker
  // failover) is dropped and counted. Keys are remembered for a bounded window.
  std::string dedupe_key;
};

// Close a socket after its queued writes (IRIS EndServer).
struct End {
  std::string wsid;
  std::uint16_t code = 1000;
  std::string reason;
};

// Topic membership at the gateway: who gets the bytes of a PUBLISH.
struct Subscribe {
  std::string wsid;
  std::string topic;
};

struct Unsubscribe {
  std::string wsid;
  std::string topic;
};

// One payload to every subscriber of a topic on this gateway, optionally but one.
struct Publish {
  std::string topic;
  bool binary = false;
  std::string payload;
  std::string except_wsid;  // empty: nobody excluded
  std::string dedupe_key;   // as in Write
  // Non-empty: snapshots of one changing thing (a room's userlist) published by several
  // workers. The gateway drops a PUBLISH whose order_version is below the highest it has
  // delivered for that key, so the newest snapshot is the last one every client sees.
  std::string order_key;
  std::uint64_t order_version = 0;
};

// "Is this WSID still open?" answered by Status.
struct Query {
  std::string wsid;
};

}  // namespace sb::proto
