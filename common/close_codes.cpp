#include "close_codes.hpp"

namespace sb::close_code {

std::string_view describe(std::uint16_t code) {
  switch (code) {
    case normal: return "normal";
    case going_away: return "going away";
    case protocol_error: return "protocol error";
    case unsupported_data: return "unsupported data";
    case no_status: return "no status";
    case abnormal: return "abnormal";
    case invalid_payload: return "invalid payload";
    case policy_violation: return "policy violation";
    case message_too_big: return "message too big";
    case internal_error: return "internal error";
    case service_restart: return "service restart";
    case try_again_later: return "try again later";
    case slow_consumer: return "slow consumer";
    case ping_timeout: return "ping timeout";
    case unknown_app: return "unknown app";
    default: return "other";
  }
}

}  // namespace sb::close_code
