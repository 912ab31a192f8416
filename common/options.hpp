// Shared plumbing for both binaries' command lines: precedence is
// command line > SWITCHBOARD_* environment > --config file > defaults.
// Pure: the environment is passed in, so parsing is testable without touching the process.
#pragma once
#include <boost/program_options.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sb {

using Environment = std::map<std::string, std::string>;

// SWITCHBOARD_* variables of the running process.
Environment switchboard_environment();

// "max-message-bytes" -> "SWITCHBOARD_MAX_MESSAGE_BYTES"
std::string environment_name(const std::string& option);

template <typename Config>
struct ParseOutcome {
  std::optional<Config> config;  // set when the program should run
  int exit_code = 0;             // when config is empty: 0 after --help, 2 for bad input
  std::string message;           // help text or the error, ready to print
};

// Parses args (without argv[0]) against `options` plus --help and --config, filling the
// variables bound in `options`. Returns the variables map, or sets exit_code/message.
struct RawParse {
  boost::program_options::variables_map values;
  bool stop = false;
  int exit_code = 0;
  std::string message;
};
RawParse parse_layers(const std::string& program, const std::string& summary,
                      const boost::program_options::options_description& options,
                      const std::vector<std::string>& args, const Environment& env);

// Lists given as "a,b", as a repeated option, or both; blanks around items are dropped.
std::vector<std::string> split_list(const std::vector<std::string>& values);
std::string join_list(const std::vector<std::string>& items, const char* separator = ",");

// "127.0.0.1:8080" -> host and port; nullopt when malformed.
struct HostPort {
  std::string host;
  int port = 0;
};
std::optional<HostPort> parse_host_port(const std::string& text);

}  // namespace sb
