#include "options.hpp"

#include <cctype>
#include <fstream>
#include <sstream>

extern char** environ;

namespace sb {
namespace po = boost::program_options;

Environment switchboard_environment() {
  Environment env;
  for (char** p = environ; p && *p; ++p) {
    std::string entry(*p);
    if (entry.rfind("SWITCHBOARD_", 0) != 0) continue;
    auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return env;
}

std::string environment_name(const std::string& option) {
  std::string out = "SWITCHBOARD_";
  for (char c : option) out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string> split_list(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const auto& value : values) {
    std::stringstream in(value);
    std::string item;
    while (std::getline(in, item, ',')) {
      auto first = item.find_first_not_of(" \t");
      auto last = item.find_last_not_of(" \t");
      out.push_back(first == std::string::npos ? std::string() : item.substr(first, last - first + 1));
    }
  }
  return out;
}

std::string join_list(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

RawParse parse_layers(const std::string& program, const std::string& summary,
                      const po::options_description& options, const std::vector<std::string>& args,
                      const Environment& env) {
  RawParse out;
  po::options_description generic("General");
  generic.add_options()("help,h", "print this help and exit")(
      "config", po::value<std::string>(), "read options from this INI-style file (name = value)");
  po::options_description all;
  all.add(generic).add(options);

  try {
    po::store(po::command_line_parser(args).options(all).run(), out.values);

    if (out.values.count("help")) {
      std::ostringstream text;
      text << "Usage: " << program << " [options]\n" << summary << "\n\n" << all << "\n"
           << "Every option can also be set as SWITCHBOARD_<NAME> in the environment\n"
           << "(e.g. --max-message-bytes -> SWITCHBOARD_MAX_MESSAGE_BYTES); the command line wins\n"
           << "over the environment, which wins over the config file.\n";
      out.stop = true;
      out.message = text.str();
      return out;
    }

    // Environment: only options the program knows; unknown SWITCHBOARD_* are an error so
    // typos do not pass silently.
    std::vector<std::string> env_args;
    std::string config_from_env;
    for (const auto& [name, value] : env) {
      if (name == "SWITCHBOARD_CONFIG") {
        config_from_env = value;
        continue;
      }
      bool known = false;
      for (const auto& option : options.options()) {
        if (environment_name(option->long_name()) == name) {
          env_args.push_back("--" + option->long_name() + "=" + value);
          known = true;
          break;
        }
      }
      if (!known) throw po::error("unknown environment variable " + name);
    }
    po::store(po::command_line_parser(env_args).options(all).run(), out.values);

    std::string config_path = out.values.count("config") ? out.values["config"].as<std::string>() : config_from_env;
    if (!config_path.empty()) {
      std::ifstream file(config_path);
      if (!file) throw po::error("cannot read config file " + config_path);
      po::store(po::parse_config_file(file, options), out.values);
    }
    po::notify(out.values);
  } catch (const po::error& e) {
    out.stop = true;
    out.exit_code = 2;
    out.message = program + ": " + e.what() + " (see --help)\n";
  }
  return out;
}

std::optional<HostPort> parse_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  HostPort out;
  out.host = text.substr(0, colon);
  auto port_text = text.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5) return std::nullopt;
  for (char c : port_text)
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  out.port = std::stoi(port_text);
  if (out.port > 65535) return std::nullopt;
  return out;
}

}  // namespace sb
