#include "safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#ifdef _WIN32
#ifndef NOMINMAX
#define NOMINMAX  // (windows.h's min and max macros would break std::min)
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <io.h>
#include <windows.h>  // MultiByteToWideChar
#else
#include <unistd.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace pyfer {

int64_t TensorInfo::numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
}

float half_to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  // subnormal: renormalise
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; --exp; }
            man &= 0x3FF;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

void SafeTensors::fail(const std::string& msg) const {
    throw FormatError(path_ + ": " + msg);
}

constexpr size_t MAX_RANK = 8;
constexpr uint64_t MAX_ELEMENTS = uint64_t(1) << 40;
constexpr size_t MAX_FILE_BYTES = size_t(1) << 30;  // the fp32 teacher is 50 MB

static size_t dtype_size(const std::string& d) {
    if (d == "F32" || d == "I32" || d == "U32") return 4;
    if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
    if (d == "F64" || d == "I64" || d == "U64") return 8;
    if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
    return 0;
}

// CRC-32 as zlib computes it (reflected polynomial 0xEDB88320), by slicing-by-8: eight tables let
// each step fold 8 bytes with 8 independent lookups instead of a chain of 8 dependent ones
// (2.5-3.6 GB/s on Zen 4: 10 ms on the 25 MB fp16 teacher's 64 ms load, 1.4 ms on the 5 MB student's 2.9).
// `crc` chains pieces as zlib's crc32(crc, p, n) does: crc32(b, crc32(a)) is the CRC of a then b.
static uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
    struct Tables {
        uint32_t t[8][256];
        Tables() {
            for (uint32_t i = 0; i < 256; ++i) {
                uint32_t c = i;
                for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
                t[0][i] = c;
            }
            for (int s = 1; s < 8; ++s)
                for (int i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
        }
    };
    static const Tables tables;
    const auto& t = tables.t;
    uint32_t c = crc ^ 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        // byte by byte, not a 64-bit load: the same on either endianness
        const uint32_t lo = c ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
        c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^ t[3][p[4]] ^
            t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
    }
    for (; n; ++p, --n) c = (c >> 8) ^ t[0][(c ^ *p) & 0xFF];
    return c ^ 0xFFFFFFFFu;
}

// The few file calls the loader makes, on POSIX and on Windows (whose C runtime has the same
// calls with an underscore, 64-bit sizes under other names and UTF-16 file names).
namespace {

#ifdef _WIN32
using FileStat = struct _stat64;

// the path is UTF-8 (as Python passes it): the wide-character call reaches every name
int open_for_reading(const std::string& path) {
    const int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path.c_str(), -1, nullptr, 0);
    if (n <= 0) {
        errno = EILSEQ;  // not UTF-8: "cannot open: Illegal byte sequence"
        return -1;
    }
    std::wstring wide(size_t(n), L'\0');
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path.c_str(), -1, &wide[0], n);
    return ::_wopen(wide.c_str(), _O_RDONLY | _O_BINARY | _O_NOINHERIT);
}
int stat_of(int fd, FileStat* st) { return ::_fstat64(fd, st); }
bool is_regular(const FileStat& st) { return (st.st_mode & _S_IFMT) == _S_IFREG; }
void reading_blocks(int) {}
long long read_some(int fd, void* buf, size_t n) { return ::_read(fd, buf, unsigned(std::min<size_t>(n, 1u << 30))); }
void close_file(int fd) { ::_close(fd); }
// (whole seconds: the C runtime's struct keeps no finer modification time, though NTFS does)
bool same_file_state(const FileStat& a, const FileStat& b) {
    return a.st_size == b.st_size && a.st_mtime == b.st_mtime;
}
#else
using FileStat = struct stat;

// O_NONBLOCK: opening a FIFO would otherwise wait for a writer, forever; the S_ISREG check
// refuses it (the flag changes nothing for a regular file)
int open_for_reading(const std::string& path) { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK); }
int stat_of(int fd, FileStat* st) { return ::fstat(fd, st); }
bool is_regular(const FileStat& st) { return S_ISREG(st.st_mode); }
void reading_blocks(int fd) {  // a FUSE file may honour O_NONBLOCK: read blocking
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}
long long read_some(int fd, void* buf, size_t n) { return ::read(fd, buf, n); }
void close_file(int fd) { ::close(fd); }
// The file's size and modification time agree (nanoseconds; macOS names the field apart)
bool same_file_state(const FileStat& a, const FileStat& b) {
#ifdef __APPLE__
    const auto &ta = a.st_mtimespec, &tb = b.st_mtimespec;
#else
    const auto &ta = a.st_mtim, &tb = b.st_mtim;
#endif
    return a.st_size == b.st_size && ta.tv_sec == tb.tv_sec && ta.tv_nsec == tb.tv_nsec;
}
#endif

}  // namespace

SafeTensors::SafeTensors(const std::string& path) : path_(path) {
    const int fd = open_for_reading(path);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR) throw FileNotFound("no weights file at " + path);
        throw FormatError(path + ": cannot open: " + std::strerror(e));
    }
    struct FdCloser {
        int fd;
        ~FdCloser() { close_file(fd); }
    } closer{fd};
    FileStat st;
    if (stat_of(fd, &st) != 0 || !is_regular(st)) throw FormatError(path + ": not a regular file");
    reading_blocks(fd);
    size_ = static_cast<size_t>(st.st_size);
    if (size_ < 8) fail("file too short (" + std::to_string(size_) + " bytes) to be a safetensors file");
    // Read, not mapped: a mapped file that another process truncates during the load would kill
    // the whole app with SIGBUS; a read just sees fewer bytes, refused below.
    if (size_ > MAX_FILE_BYTES)
        fail("file of " + std::to_string(size_) + " bytes is larger than the " + std::to_string(MAX_FILE_BYTES >> 20) +
             " MiB a model may have");
    file_.resize(size_);
    size_t got = 0;
    while (got < size_) {
        const long long r = read_some(fd, file_.data() + got, size_ - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fail(std::string("cannot read: ") + std::strerror(errno));
        if (r == 0) break;
        got += static_cast<size_t>(r);
    }
    // Fewer bytes, more bytes, or a write during the read (the modification time moved): any of
    // them could load a mix of two files. A same-size rewrite in place that began before the read
    // is not seen here (the time moves when a write starts, and in coarse steps): the data
    // checksum in parse() catches that mix, in files that carry one.
    char extra;
    const bool grew = got == size_ && read_some(fd, &extra, 1) > 0;
    FileStat after;
    const bool rewritten = stat_of(fd, &after) != 0 || !same_file_state(st, after);
    if (got != size_ || grew || rewritten)
        fail("the file changed while it was read (" + std::to_string(size_) + " bytes when opened)");
    image_ = file_.data();
    parse();
}

SafeTensors::SafeTensors(const std::string& label, const void* data, size_t size)
    : path_(label), image_(static_cast<const uint8_t*>(data)), size_(size) {
    if (size_ < 8) fail("file too short (" + std::to_string(size_) + " bytes) to be a safetensors file");
    parse();
}

void SafeTensors::parse() {
    {
        const uint8_t* base = image_;
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | base[i];
        // 16 MiB: a pyfer header is a few KB, and parsing costs memory in proportion
        if (hlen == 0 || hlen > size_ - 8 || hlen > (16u << 20))
            fail("corrupt header: header length " + std::to_string(hlen) + " does not fit in a " +
                 std::to_string(size_) + "-byte file (truncated or not a safetensors file)");
        Json h;
        try {
            h = Json::parse(reinterpret_cast<const char*>(base + 8), static_cast<size_t>(hlen));
        } catch (const FormatError& e) {
            fail(std::string("corrupt header: ") + e.what());
        }
        if (h.type != Json::Object) fail("corrupt header: not a JSON object");
        const uint8_t* data = base + 8 + hlen;
        const size_t data_size = size_ - 8 - hlen;
        std::vector<std::pair<uint64_t, uint64_t>> spans;
        for (auto& kv : h.obj) {
            if (kv.first == "__metadata__") {
                if (kv.second.type != Json::Object) fail("__metadata__ is not an object");
                for (auto& m : kv.second.obj) {
                    if (m.second.type != Json::String) fail("metadata value for '" + m.first + "' is not a string");
                    meta_[m.first] = m.second.str;
                }
                continue;
            }
            const Json& t = kv.second;
            const Json* dt = t.get("dtype");
            const Json* sh = t.get("shape");
            const Json* off = t.get("data_offsets");
            if (!dt || dt->type != Json::String || !sh || sh->type != Json::Array || !off ||
                off->type != Json::Array || off->arr.size() != 2)
                fail("corrupt header entry for tensor '" + kv.first + "'");
            TensorInfo ti;
            ti.dtype = dt->str;
            size_t es = dtype_size(ti.dtype);
            if (es == 0) fail("tensor '" + kv.first + "' has unknown dtype " + ti.dtype);
            if (sh->arr.size() > MAX_RANK) fail("tensor '" + kv.first + "' has more than " + std::to_string(MAX_RANK) + " dimensions");
            uint64_t numel = 1;
            for (auto& d : sh->arr) {
                if (!d.is_int() || d.num < 0 || d.num > 1e12) fail("tensor '" + kv.first + "' has a bad shape");
                ti.shape.push_back(d.as_int());
                const uint64_t dim = static_cast<uint64_t>(d.as_int());
                if (dim && numel > MAX_ELEMENTS / dim) fail("tensor '" + kv.first + "' is too large");  // before it wraps
                numel *= dim;
            }
            for (auto& o : off->arr)
                if (!o.is_int() || o.num < 0) fail("tensor '" + kv.first + "' has bad data offsets");
            uint64_t b = static_cast<uint64_t>(off->arr[0].as_int());
            uint64_t e = static_cast<uint64_t>(off->arr[1].as_int());
            if (b > e || e > data_size)
                fail("tensor '" + kv.first + "' data [" + std::to_string(b) + ", " + std::to_string(e) +
                     ") lies outside the file's " + std::to_string(data_size) + " data bytes (truncated file?)");
            if (e - b != numel * es)
                fail("tensor '" + kv.first + "' byte size " + std::to_string(e - b) + " does not match its shape and dtype");
            ti.data = data + b;
            ti.nbytes = static_cast<size_t>(e - b);
            if (tensors_.count(kv.first)) fail("tensor '" + kv.first + "' is listed twice");
            tensors_[kv.first] = std::move(ti);
            spans.emplace_back(b, e);
        }
        // As the safetensors spec requires, the tensors tile the data section exactly (no holes,
        // no overlaps, nothing after the last one): a wrong header length or shifted offsets would
        // otherwise load misaligned weights silently.
        std::sort(spans.begin(), spans.end());
        uint64_t at = 0;
        for (auto& s : spans) {
            if (s.first != at)
                fail("tensor data is not contiguous at byte " + std::to_string(std::min(at, s.first)) +
                     " of the data section (corrupt header length or offsets)");
            at = s.second;
        }
        if (at != data_size)
            fail("tensors cover " + std::to_string(at) + " of the " + std::to_string(data_size) +
                 " data bytes (corrupt header length, or a truncated/padded file)");
        check_crc32("header_crc32", [&] { return header_crc32(static_cast<size_t>(8 + hlen)); }, "header");
        check_crc32("data_crc32", [&] { return crc32(data, data_size); }, "tensor data");
    }
}

// pyfer.weights_file.save_checked, which every writer of model files uses, stamps two CRC-32s (8
// lowercase hex digits each) in the metadata: "data_crc32" of the data section, "header_crc32" of
// the length and header. A key a file lacks (older exports, other tools) is not checked.
template <class Compute>
void SafeTensors::check_crc32(const char* key, Compute compute, const char* what) const {
    auto it = meta_.find(key);
    if (it == meta_.end()) return;
    const std::string& hex = it->second;
    uint32_t expected = 0;
    bool ok = hex.size() == 8;
    for (char ch : hex) {
        const int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        ok = ok && v >= 0;
        expected = expected << 4 | uint32_t(v & 0xF);
    }
    if (!ok) fail(std::string(key) + " metadata '" + hex + "' is not 8 lowercase hex digits");
    const uint32_t got = compute();
    if (got != expected) {
        // worded as pyfer.weights_file words it (STALE_CHECKSUM_HINT)
        char msg[512];
        std::snprintf(msg, sizeof msg,
                      "%s fails its checksum (%s %08x, read %08x): the file is damaged, was rewritten while it "
                      "loaded, or was re-saved by another writer that kept the old checksum (safetensors' "
                      "save_file writes the metadata in another order each run): write it with "
                      "pyfer.weights_file.save_checked, or delete data_crc32 and header_crc32 to load it unchecked",
                      what, key, unsigned(expected), unsigned(got));
        fail(msg);
    }
}

// The CRC-32 of the first `header_end` bytes (length and JSON header) with header_crc32's own 8
// digits read as "00000000": a checksum cannot cover itself. The digits are found as
// pyfer.weights_file.header_crc32 finds them, after the one `"header_crc32":"` in the header
// (compact JSON, as safetensors writes it); a file where it is not there once is refused.
uint32_t SafeTensors::header_crc32(size_t header_end) const {
    static const std::string field = "\"header_crc32\":\"";
    const char* begin = reinterpret_cast<const char*>(image_) + 8;
    const char* end = reinterpret_cast<const char*>(image_) + header_end;
    const char* found = std::search(begin, end, field.begin(), field.end());
    if (found == end || end - found < ptrdiff_t(field.size() + 8) ||
        std::search(found + 1, end, field.begin(), field.end()) != end)
        fail("header_crc32 is not in the header once, as compact JSON writes it");
    const size_t at = static_cast<size_t>(found + field.size() - reinterpret_cast<const char*>(image_));
    static const uint8_t unstamped[8] = {'0', '0', '0', '0', '0', '0', '0', '0'};
    uint32_t c = crc32(image_, at);
    c = crc32(unstamped, 8, c);
    return crc32(image_ + at + 8, header_end - at - 8, c);
}

static std::string shape_str(const std::vector<int64_t>& s) {
    std::ostringstream o;
    o << "(";
    for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
    if (s.size() == 1) o << ",";
    o << ")";
    return o.str();
}

std::vector<float> SafeTensors::get_f32(const std::string& name, const std::vector<int64_t>& shape) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("missing tensor '" + name + "' (wrong architecture or incomplete export?)");
    const TensorInfo& t = it->second;
    if (t.shape != shape)
        fail("tensor '" + name + "' has shape " + shape_str(t.shape) + ", expected " + shape_str(shape) +
             " (wrong architecture/num_classes/in_channels in metadata?)");
    size_t n = static_cast<size_t>(t.numel());
    std::vector<float> out(n);
    if (t.dtype == "F32") {
        if (n) std::memcpy(out.data(), t.data, n * 4);  // (an empty vector's data() may be null)
    } else if (t.dtype == "F16") {
        for (size_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            out[i] = half_to_float(h);
        }
    } else if (t.dtype == "BF16") {
        for (size_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            uint32_t bits = uint32_t(h) << 16;
            std::memcpy(&out[i], &bits, 4);
        }
    } else {
        fail("tensor '" + name + "' has dtype " + t.dtype + "; expected F32 (or F16/BF16)");
    }
    return out;
}

}  // namespace pyfer
