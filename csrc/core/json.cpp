#include "json.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <locale.h>

namespace pyfer {

const Json* Json::get(const std::string& key) const {
    if (type != Object) return nullptr;
    for (auto& kv : obj)
        if (kv.first == key) return &kv.second;
    return nullptr;
}

bool Json::is_int() const {
    return type == Number && std::isfinite(num) && std::floor(num) == num && std::fabs(num) < 9.0e15;
}

namespace {
// strtod in the "C" locale, whatever this thread's is: strtod follows LC_NUMERIC, and an
// application that sets a comma-decimal one (GTK's init does, from the environment) would make
// "0.5" unreadable. The token has passed the JSON grammar, so out-of-range values keep strtod's
// answers (inf, 0, subnormals) as before; only the locale is pinned (uselocale: this thread only).
double strtod_c(const char* s, char** stop) {
#ifdef _WIN32
    static const _locale_t c_locale = _create_locale(LC_NUMERIC, "C");
    return c_locale ? _strtod_l(s, stop, c_locale) : std::strtod(s, stop);
#else
    static const locale_t c_locale = newlocale(LC_NUMERIC_MASK, "C", locale_t(0));
    const locale_t previous = c_locale ? uselocale(c_locale) : locale_t(0);
    const double v = std::strtod(s, stop);
    if (previous) uselocale(previous);
    return v;
#endif
}

// Each value costs sizeof(Json) (~100 bytes) and more in its containers: a cap on their count
// keeps a crafted header from costing 80x its size in memory (a pyfer header has a few thousand)
constexpr size_t MAX_VALUES = size_t(1) << 18;

struct Parser {
    const char* p;
    const char* end;
    size_t values = 0;
    [[noreturn]] void fail(const char* what) {
        throw FormatError(std::string("invalid JSON: ") + what);
    }
    void ws() {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
    }
    bool lit(const char* s) {
        size_t n = std::strlen(s);
        if (static_cast<size_t>(end - p) >= n && std::memcmp(p, s, n) == 0) {
            p += n;
            return true;
        }
        return false;
    }
    static void put_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) out += char(cp);
        else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
        }
    }
    unsigned hex4() {
        if (end - p < 4) fail("truncated \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; ++i) {
            char c = *p++;
            v <<= 4;
            if (c >= '0' && c <= '9') v |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
            else fail("bad \\u escape");
        }
        return v;
    }
    // a multi-byte UTF-8 sequence starting with lead byte c (already consumed): validated and
    // appended, so that every string handed to Python decodes (RFC 8259: JSON text is UTF-8)
    void utf8_tail(std::string& out, unsigned char c) {
        int n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else fail("invalid UTF-8 in string");
        if (end - p < n) fail("invalid UTF-8 in string");
        out += char(c);
        for (int i = 0; i < n; ++i) {
            unsigned char d = static_cast<unsigned char>(*p++);
            if (d < (i == 0 ? lo : 0x80) || d > (i == 0 ? hi : 0xBF)) fail("invalid UTF-8 in string");
            out += char(d);
        }
    }
    std::string string() {
        if (p >= end || *p != '"') fail("expected string");
        ++p;
        std::string out;
        while (true) {
            if (p >= end) fail("unterminated string");
            char c = *p++;
            if (c == '"') break;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (static_cast<unsigned char>(c) >= 0x80) { utf8_tail(out, static_cast<unsigned char>(c)); continue; }
            if (c != '\\') { out += c; continue; }
            if (p >= end) fail("unterminated escape");
            char e = *p++;
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xDC00 && cp < 0xE000) fail("lone surrogate");
                    if (cp >= 0xD800 && cp < 0xDC00) {
                        if (!lit("\\u")) fail("lone surrogate");
                        unsigned lo = hex4();
                        if (lo < 0xDC00 || lo >= 0xE000) fail("bad surrogate pair");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: fail("bad escape");
            }
        }
        return out;
    }
    Json value(int depth) {
        if (depth > 64) fail("nesting too deep");
        if (++values > MAX_VALUES) fail("too many values");
        ws();
        if (p >= end) fail("unexpected end");
        Json j;
        char c = *p;
        if (c == '{') {
            ++p;
            j.type = Json::Object;
            ws();
            if (p < end && *p == '}') { ++p; return j; }
            while (true) {
                ws();
                std::string k = string();
                ws();
                if (p >= end || *p != ':') fail("expected ':'");
                ++p;
                j.obj.emplace_back(std::move(k), value(depth + 1));
                ws();
                if (p < end && *p == ',') { ++p; continue; }
                if (p < end && *p == '}') { ++p; break; }
                fail("expected ',' or '}'");
            }
        } else if (c == '[') {
            ++p;
            j.type = Json::Array;
            ws();
            if (p < end && *p == ']') { ++p; return j; }
            while (true) {
                j.arr.push_back(value(depth + 1));
                ws();
                if (p < end && *p == ',') { ++p; continue; }
                if (p < end && *p == ']') { ++p; break; }
                fail("expected ',' or ']'");
            }
        } else if (c == '"') {
            j.type = Json::String;
            j.str = string();
        } else if (lit("true")) { j.type = Json::Bool; j.b = true; }
        else if (lit("false")) { j.type = Json::Bool; j.b = false; }
        else if (lit("null")) { j.type = Json::Null; }
        else if (c == '-' || (c >= '0' && c <= '9')) {
            const char* s = p;
            if (*p == '-') ++p;
            while (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-')) ++p;
            std::string tok(s, p);
            // strict RFC 8259 grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? (strtod alone
            // would take "01" or "1." which Python's json module then refuses)
            size_t i = tok[0] == '-' ? 1 : 0;
            auto digits = [&]() { size_t k = i; while (i < tok.size() && tok[i] >= '0' && tok[i] <= '9') ++i; return i - k; };
            const bool lead0 = i < tok.size() && tok[i] == '0';
            const size_t nint = digits();
            bool okn = nint > 0 && !(lead0 && nint > 1);
            if (okn && i < tok.size() && tok[i] == '.') { ++i; okn = digits() > 0; }
            if (okn && i < tok.size() && (tok[i] == 'e' || tok[i] == 'E')) {
                ++i;
                if (i < tok.size() && (tok[i] == '+' || tok[i] == '-')) ++i;
                okn = digits() > 0;
            }
            if (!okn || i != tok.size()) fail("bad number");
            char* stop = nullptr;
            j.type = Json::Number;
            j.num = strtod_c(tok.c_str(), &stop);
            if (stop != tok.c_str() + tok.size()) fail("bad number");
        } else {
            fail("unexpected character");
        }
        return j;
    }
};
}  // namespace

Json Json::parse(const char* data, size_t len) {
    Parser ps{data, data + len};
    Json j = ps.value(0);
    ps.ws();
    if (ps.p != ps.end) ps.fail("trailing characters");
    return j;
}

}  // namespace pyfer
