// A small strict JSON reader and writer for safetensors headers (RFC 8259; no extensions). The
// reader pulls values one at a time and nests at most json_reader::max_depth levels, so no input
// can exhaust the stack; numbers are never converted to floating point, so no input can reach an
// out-of-range float-to-integer conversion. The writer escapes as nlohmann::json::dump() does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace seqmix::io::detail {

/// A syntax error: what was wrong and the byte offset (within the parsed text) where.
struct json_syntax_error {
  std::string what;
  std::size_t offset = 0;
};

/// A JSON number literal, read without conversion to floating point.
struct json_number {
  bool is_integer = false;  ///< no sign, fraction or exponent: a non-negative integer literal
  bool fits = false;        ///< ... whose value fits std::uint64_t
  std::uint64_t value = 0;  ///< the value when is_integer && fits
};

/// Reads one JSON text. Every method throws json_syntax_error on malformed input; none reads
/// outside [begin, end).
class json_reader {
 public:
  static constexpr int max_depth = 64;

  json_reader(const char* begin, const char* end) : begin_(begin), p_(begin), end_(end) {}

  std::size_t offset() const { return static_cast<std::size_t>(p_ - begin_); }
  const char* position() const { return p_; }
  bool at_end() const { return p_ == end_; }

  void skip_ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  /// The first character of the next value (after whitespace): '{', '[', '"', 't', 'f', 'n', '-'
  /// or a digit; 0 at the end of the text.
  char peek() {
    skip_ws();
    return p_ == end_ ? '\0' : *p_;
  }
  /// Consumes `c` (after whitespace) if it is next.
  bool consume(char c) {
    if (peek() != c) return false;
    ++p_;
    return true;
  }
  void expect(char c) {
    if (!consume(c)) fail(std::string("expected '") + c + "'");
  }

  /// Validates and skips one value of any kind, nested at most max_depth - depth levels.
  void skip_value(int depth = 0) {
    if (depth >= max_depth) fail("nested deeper than " + std::to_string(max_depth) + " levels");
    switch (peek()) {
      case '{':
        ++p_;
        if (consume('}')) return;
        do {
          if (peek() != '"') fail("expected a string key");
          skip_string();
          expect(':');
          skip_value(depth + 1);
        } while (consume(','));
        expect('}');
        return;
      case '[':
        ++p_;
        if (consume(']')) return;
        do skip_value(depth + 1);
        while (consume(','));
        expect(']');
        return;
      case '"': skip_string(); return;
      case 't': literal("true"); return;
      case 'f': literal("false"); return;
      case 'n': literal("null"); return;
      default: (void)number(); return;
    }
  }

  /// Reads a string value, decoding escapes into UTF-8.
  std::string string() {
    std::string out;
    read_string(&out);
    return out;
  }
  void skip_string() { read_string(nullptr); }

  /// Reads a number literal.
  json_number number() {
    skip_ws();
    json_number n;
    const bool negative = p_ != end_ && *p_ == '-';
    if (negative) ++p_;
    if (p_ == end_ || !is_digit(*p_)) fail("expected a value");
    n.fits = true;
    if (*p_ == '0') {
      ++p_;
    } else {
      for (; p_ != end_ && is_digit(*p_); ++p_) {
        const auto d = static_cast<std::uint64_t>(*p_ - '0');
        if (n.value > (UINT64_MAX - d) / 10) n.fits = false;
        n.value = n.fits ? n.value * 10 + d : 0;
      }
    }
    bool fraction = false, exponent = false;
    if (p_ != end_ && *p_ == '.') {
      ++p_;
      if (p_ == end_ || !is_digit(*p_)) fail("expected a digit after '.'");
      while (p_ != end_ && is_digit(*p_)) ++p_;
      fraction = true;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !is_digit(*p_)) fail("expected a digit in the exponent");
      while (p_ != end_ && is_digit(*p_)) ++p_;
      exponent = true;
    }
    n.is_integer = !negative && !fraction && !exponent;
    if (!n.is_integer) n.fits = false, n.value = 0;
    return n;
  }

  [[noreturn]] void fail(std::string what) const { throw json_syntax_error{std::move(what), offset()}; }

 private:
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  void literal(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word)
      fail("expected a value");
    p_ += word.size();
  }

  unsigned hex4() {
    if (end_ - p_ < 4) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      const char c = *p_;
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) fail("bad hex digit in \\u escape");
      v = v * 16 + static_cast<unsigned>(d);
    }
    return v;
  }

  static void put_utf8(std::string* out, std::uint32_t cp) {
    if (!out) return;
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  void read_string(std::string* out) {
    if (peek() != '"') fail("expected a string");
    ++p_;
    for (;;) {
      if (p_ == end_) fail("unterminated string");
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return;
      }
      if (c < 0x20) fail("control character in a string");
      if (c == '\\') {
        ++p_;
        if (p_ == end_) fail("unterminated string");
        const char e = *p_++;
        switch (e) {
          case '"': case '\\': case '/': if (out) out->push_back(e); break;
          case 'b': if (out) out->push_back('\b'); break;
          case 'f': if (out) out->push_back('\f'); break;
          case 'n': if (out) out->push_back('\n'); break;
          case 'r': if (out) out->push_back('\r'); break;
          case 't': if (out) out->push_back('\t'); break;
          case 'u': {
            std::uint32_t cp = hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail("high surrogate without a low one");
              p_ += 2;
              const std::uint32_t lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate without a low one");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(out, cp);
            break;
          }
          default: --p_; fail("bad escape in a string");
        }
        continue;
      }
      const std::size_t n = utf8_length(p_, end_);
      if (n == 0) fail("invalid UTF-8 in a string");
      if (out) out->append(p_, n);
      p_ += n;
    }
  }

 public:
  /// Length of the valid UTF-8 sequence at p (1..4), or 0 if it is invalid (overlong, surrogate,
  /// above U+10FFFF, truncated).
  static std::size_t utf8_length(const char* p, const char* end) {
    const auto b0 = static_cast<unsigned char>(p[0]);
    if (b0 < 0x80) return 1;
    std::size_t n;
    std::uint32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) n = 2, cp = b0 & 0x1Fu;
    else if (b0 >= 0xE0 && b0 <= 0xEF) n = 3, cp = b0 & 0x0Fu;
    else if (b0 >= 0xF0 && b0 <= 0xF4) n = 4, cp = b0 & 0x07u;
    else return 0;
    if (static_cast<std::size_t>(end - p) < n) return 0;
    for (std::size_t i = 1; i < n; ++i) {
      const auto b = static_cast<unsigned char>(p[i]);
      if ((b & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    return n;
  }

 private:
  const char* begin_;
  const char* p_;
  const char* end_;
};

/// Appends `s` as a JSON string literal (quotes, backslash and control characters escaped, UTF-8
/// kept as is). Returns false, appending nothing, if `s` is not valid UTF-8.
inline bool append_json_string(std::string& out, std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = json_reader::utf8_length(s.data() + i, s.data() + s.size());
    if (n == 0) return false;
    i += n;
  }
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          constexpr char hex[] = "0123456789abcdef";
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 15]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
  return true;
}

}  // namespace seqmix::io::detail
