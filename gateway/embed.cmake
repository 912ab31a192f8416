# Turns the chat page into a C++ byte array so the gateway is one self-contained binary.
file(READ ${INPUT} content HEX)
string(LENGTH "${content}" hex_length)
math(EXPR length "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE ${OUTPUT} "// Generated from gateway/web/index.html by embed.cmake; do not edit.\n"
  "#include <cstddef>\n#include <string_view>\nnamespace sb::gateway {\n"
  "static const unsigned char page_bytes[] = {${bytes}};\n"
  "std::string_view chat_page() { return {reinterpret_cast<const char*>(page_bytes), ${length}}; }\n}\n")
