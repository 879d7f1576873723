// RFC 6455 wire pieces shared by the emulated IIS (emu.cpp, websocket_emu.h) and the Windows
// test backend (backend.cpp): the accept key, frame encoding, close payloads, a blocking send.
// Test code only; each program is one translation unit, hence the inline definitions.

#pragma once

#include <winsock2.h>
#include <windows.h>
#include <wincrypt.h>

#include <string>

namespace wswire {

const char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// SHA-1 through CryptoAPI (for Sec-WebSocket-Accept); empty on failure.
inline std::string Sha1(const std::string &in)
{
    HCRYPTPROV prov = 0;
    HCRYPTHASH hash = 0;
    unsigned char digest[20];
    DWORD len = sizeof digest;
    std::string out;
    if (CryptAcquireContextW(&prov, nullptr, nullptr, PROV_RSA_FULL, CRYPT_VERIFYCONTEXT) &&
        CryptCreateHash(prov, CALG_SHA1, 0, 0, &hash) &&
        CryptHashData(hash, reinterpret_cast<const BYTE *>(in.data()),
                      static_cast<DWORD>(in.size()), 0) &&
        CryptGetHashParam(hash, HP_HASHVAL, digest, &len, 0) && len == sizeof digest) {
        out.assign(reinterpret_cast<const char *>(digest), sizeof digest);
    }
    if (hash != 0) CryptDestroyHash(hash);
    if (prov != 0) CryptReleaseContext(prov, 0);
    return out;
}

// Standard base64 with padding.
inline std::string Base64(const std::string &in)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
        out += t[(v >> 18) & 63];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += t[v & 63];
    }
    if (i + 1 == in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += t[(v >> 18) & 63];
        out += t[(v >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
        out += t[(v >> 18) & 63];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + the RFC 6455 GUID)).
inline std::string AcceptKey(const std::string &key)
{
    return Base64(Sha1(key + kGuid));
}

inline bool SendAll(SOCKET s, const char *p, size_t n)
{
    while (n > 0) {
        int k = send(s, p, static_cast<int>(n > 65536 ? 65536 : n), 0);
        if (k <= 0) {
            return false;
        }
        p += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

// A frame header plus payload; `mask` null for a server frame.
inline std::string Frame(unsigned opcode, bool fin, const std::string &payload,
                         const unsigned char *mask)
{
    std::string h;
    h += static_cast<char>((fin ? 0x80 : 0) | opcode);
    const unsigned char m = mask != nullptr ? 0x80 : 0;
    const size_t n = payload.size();
    if (n < 126) {
        h += static_cast<char>(m | n);
    } else if (n <= 0xFFFF) {
        h += static_cast<char>(m | 126);
        h += static_cast<char>(n >> 8);
        h += static_cast<char>(n & 0xFF);
    } else {
        h += static_cast<char>(m | 127);
        for (int i = 7; i >= 0; --i) {
            h += static_cast<char>((static_cast<unsigned long long>(n) >> (8 * i)) & 0xFF);
        }
    }
    if (mask == nullptr) {
        return h + payload;
    }
    h.append(reinterpret_cast<const char *>(mask), 4);
    std::string p = payload;
    for (size_t i = 0; i < p.size(); ++i) {
        p[i] = static_cast<char>(p[i] ^ mask[i % 4]);
    }
    return h + p;
}

// A close frame's payload: the status code, big-endian, then the reason.
inline std::string ClosePayload(unsigned status, const std::string &reason)
{
    std::string p;
    p += static_cast<char>(status >> 8);
    p += static_cast<char>(status & 0xFF);
    return p + reason;
}

} // namespace wswire
