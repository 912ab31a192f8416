// One socket's state in the gateway. Owned by the gateway's loop thread (core and shell both
// run there).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/wsid.hpp"
#include "gateway/core/interned.hpp"
#include "gateway/core/send_queue.hpp"
#include "gateway/core/unacked_events.hpp"

namespace sb::gateway {

// One per open socket, plus closed ones until a worker acknowledges their CLOSE. Idle sockets
// dominate the gateway's memory, so this stays small (152 bytes, in a SessionTable slot with no
// allocation of its own): names are Interned, the WSID is its counter, flags are bits, and
// what only some sockets need is allocated when they need it.
struct Session {
  std::uint64_t counter = 0;                 // the WSID's last part: SessionTable slot and generation
  const std::string* wsid_prefix = nullptr;  // "<gateway-id>.<epoch>.", the core's own
  std::string wsid() const { return *wsid_prefix + to_base36(counter); }
  Interned app;
  Interned worker;                  // routing id of the worker serving it; empty while none is live
  std::unique_ptr<std::string> query;  // kept for take-over OPENs; null when there is none
  std::uint64_t next_seq = 1;       // sequence number of the next event (MESSAGE, then CLOSE)
  std::uint64_t acked_seq = 0;      // highest seq the current worker acknowledged
  UnackedEvents unacked;
  SendQueue queue;
  std::vector<std::string> topics;
  std::unique_ptr<std::string> close_reason_text;  // set with close_code when we close it
  const std::string& close_reason() const {
    static const std::string none;
    return close_reason_text ? *close_reason_text : none;
  }
  std::int64_t last_activity_ms = 0;  // for idle events
  std::int64_t last_heard_ms = 0;     // any frame from the client, pongs included (keep-alive)
  void* transport = nullptr;          // struct lws*; nullptr once the socket is gone
  std::unique_ptr<std::string> rx;    // shell's: a message arriving in pieces; null between messages
  std::uint16_t close_code = 0;
  std::uint16_t peer_close_code = 0;  // shell's: from the client's close frame, if any
  // An unanswered keep-alive ping went out this long after last_heard_ms (never 0: pings go
  // to sockets silent for a ping interval); 0 = none. 4 bytes where a time would take 8.
  std::uint32_t ping_sent_after_ms = 0;
  // Owned by the table:
  bool in_use : 1 = false;        // the slot holds a session
  bool closed : 1 = false;        // the socket is gone; its CLOSE awaits a worker's ACK
  // Owned by the core:
  bool dedicated : 1 = false;       // pinned: its worker's loss closes the socket (1012)
  bool reading_paused : 1 = false;  // client reads paused: too much unacknowledged
  bool closing : 1 = false;         // close once the queue is flushed (END, dedicated worker lost)
  bool close_now : 1 = false;       // close without flushing (slow consumer)
  // Owned by the shell (I/O state, never read by the core):
  bool writer_woken : 1 = false;   // a WRITEABLE callback is already requested
  bool flush_listed : 1 = false;   // in the shell's list of sockets to write to this loop turn
  bool rx_binary : 1 = false;      // opcode of the message being reassembled
  bool closing_by_us : 1 = false;  // our close frame is out: ignore the client's data
};

}  // namespace sb::gateway
