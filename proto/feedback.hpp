// Feedback family: answers and acknowledgements.
#pragma once
#include <cstdint>
#include <string>

namespace sb::proto {

// A WRITE/END/SUBSCRIBE named a WSID that is not open on this gateway.
struct Gone {
  std::string wsid;
};

// The worker has processed the WSID's events up to and including seq.
struct Ack {
  std::string wsid;
  std::uint64_t seq = 0;
};

struct Status {
  std::string wsid;
  bool open = false;
};

}  // namespace sb::proto
