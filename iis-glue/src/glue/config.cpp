// Reading an application's system.webServer/aspNetCore section through IIS's configuration
// system (IAppHostAdminManager), and a small per-application cache of the result.

#include "glue.h"

#include <map>
#include <new>

namespace ancm {
namespace {

// Owns a BSTR (the admin manager's arguments are BSTRs; IIS may rely on the length prefix, so
// a plain wide string literal is not enough).
class Bstr {
public:
    explicit Bstr(PCWSTR s) : b_(SysAllocString(s)) {}
    ~Bstr() { SysFreeString(b_); }
    Bstr(const Bstr &) = delete;
    Bstr &operator=(const Bstr &) = delete;
    BSTR get() const { return b_; }

private:
    BSTR b_;
};

// Releases a COM interface pointer at scope exit.
template <class T> class ComRef {
public:
    ComRef() : p_(nullptr) {}
    ~ComRef()
    {
        if (p_ != nullptr) {
            p_->Release();
        }
    }
    ComRef(const ComRef &) = delete;
    ComRef &operator=(const ComRef &) = delete;
    T **put() { return &p_; }
    T *get() const { return p_; }

private:
    T *p_;
};

// Clears a VARIANT at scope exit (it may own a BSTR).
class Variant {
public:
    Variant() { VariantInit(&v_); }
    ~Variant() { VariantClear(&v_); }
    Variant(const Variant &) = delete;
    Variant &operator=(const Variant &) = delete;
    VARIANT *get() { return &v_; }

private:
    VARIANT v_;
};

HRESULT ReadString(IAppHostElement *section, PCWSTR name, std::wstring &out)
{
    Bstr bname(name);
    if (bname.get() == nullptr) {
        return E_OUTOFMEMORY;
    }
    ComRef<IAppHostProperty> prop;
    HRESULT hr = section->GetPropertyByName(bname.get(), prop.put());
    if (FAILED(hr)) {
        return hr;
    }
    if (prop.get() == nullptr) {
        return E_POINTER;
    }
    Variant value;
    hr = prop.get()->get_Value(value.get());
    if (FAILED(hr)) {
        return hr;
    }
    // The schema types processPath and arguments as strings; coerce anything else so that a
    // schema variant does not fail the request.
    if (V_VT(value.get()) != VT_BSTR) {
        hr = VariantChangeType(value.get(), value.get(), 0, VT_BSTR);
        if (FAILED(hr)) {
            return hr;
        }
    }
    BSTR s = V_BSTR(value.get());
    out.assign(s != nullptr ? s : L"", s != nullptr ? SysStringLen(s) : 0);
    return S_OK;
}

// The cache: a map guarded by an SRW lock (Win32 rather than std::mutex: mingw's win32
// thread model in GCC 12 has no std::mutex, and MSVC has both).
SRWLOCK g_lock = SRWLOCK_INIT;
std::map<std::wstring, AppSettings> *g_settings = nullptr; // created on first use, never freed

bool IEqualsPrefix(const std::wstring &s, PCWSTR prefix)
{
    size_t n = wcslen(prefix);
    return s.size() >= n && CompareStringOrdinal(s.c_str(), static_cast<int>(n), prefix,
                                                 static_cast<int>(n), TRUE) == CSTR_EQUAL;
}

} // namespace

HRESULT ReadAppSettings(IHttpServer *server, PCWSTR appConfigPath, AppSettings &out) noexcept
{
    try {
        if (server == nullptr || appConfigPath == nullptr) {
            return E_INVALIDARG;
        }
        IAppHostAdminManager *admin = server->GetAdminManager();
        if (admin == nullptr) {
            return E_NOINTERFACE;
        }
        Bstr sectionName(L"system.webServer/aspNetCore");
        Bstr path(appConfigPath);
        if (sectionName.get() == nullptr || path.get() == nullptr) {
            return E_OUTOFMEMORY;
        }
        ComRef<IAppHostElement> section;
        HRESULT hr = admin->GetAdminSection(sectionName.get(), path.get(), section.put());
        if (FAILED(hr)) {
            return hr;
        }
        if (section.get() == nullptr) {
            return E_POINTER;
        }
        AppSettings s;
        hr = ReadString(section.get(), L"processPath", s.processPath);
        if (FAILED(hr)) {
            return hr;
        }
        hr = ReadString(section.get(), L"arguments", s.arguments);
        if (FAILED(hr)) {
            return hr;
        }
        out = std::move(s);
        return S_OK;
    } catch (const std::bad_alloc &) {
        return E_OUTOFMEMORY;
    } catch (...) {
        return E_UNEXPECTED;
    }
}

HRESULT GetCachedAppSettings(IHttpServer *server, PCWSTR appConfigPath, AppSettings &out) noexcept
{
    try {
        if (appConfigPath == nullptr) {
            return E_INVALIDARG;
        }
        const std::wstring key(appConfigPath);
        AcquireSRWLockShared(&g_lock);
        bool found = false;
        if (g_settings != nullptr) {
            auto it = g_settings->find(key);
            if (it != g_settings->end()) {
                try {
                    out = it->second;
                    found = true;
                } catch (...) {
                    ReleaseSRWLockShared(&g_lock);
                    throw;
                }
            }
        }
        ReleaseSRWLockShared(&g_lock);
        if (found) {
            return S_OK;
        }
        // Read outside the lock: it calls into IIS's configuration system.
        AppSettings fresh;
        HRESULT hr = ReadAppSettings(server, appConfigPath, fresh);
        if (FAILED(hr)) {
            return hr;
        }
        AcquireSRWLockExclusive(&g_lock);
        try {
            if (g_settings == nullptr) {
                g_settings = new std::map<std::wstring, AppSettings>();
            }
            (*g_settings)[key] = fresh;
        } catch (...) {
            ReleaseSRWLockExclusive(&g_lock);
            throw;
        }
        ReleaseSRWLockExclusive(&g_lock);
        out = std::move(fresh);
        return S_OK;
    } catch (const std::bad_alloc &) {
        return E_OUTOFMEMORY;
    } catch (...) {
        return E_UNEXPECTED;
    }
}

void ForgetAppSettingsUnder(PCWSTR configPathPrefix) noexcept
{
    if (configPathPrefix == nullptr) {
        return;
    }
    AcquireSRWLockExclusive(&g_lock);
    if (g_settings != nullptr) {
        // Configuration paths are case-insensitive (MACHINE/WEBROOT/APPHOST/Site/app).
        for (auto it = g_settings->begin(); it != g_settings->end();) {
            if (IEqualsPrefix(it->first, configPathPrefix)) {
                it = g_settings->erase(it);
            } else {
                ++it;
            }
        }
    }
    ReleaseSRWLockExclusive(&g_lock);
}

void ForgetAppSettings(PCWSTR appConfigPath) noexcept
{
    if (appConfigPath == nullptr) {
        return;
    }
    AcquireSRWLockExclusive(&g_lock);
    if (g_settings != nullptr) {
        for (auto it = g_settings->begin(); it != g_settings->end();) {
            if (CompareStringOrdinal(it->first.c_str(), -1, appConfigPath, -1, TRUE) ==
                CSTR_EQUAL) {
                it = g_settings->erase(it);
            } else {
                ++it;
            }
        }
    }
    ReleaseSRWLockExclusive(&g_lock);
}

std::string ToUtf8(const std::wstring &s)
{
    if (s.empty()) {
        return std::string();
    }
    int n = WideCharToMultiByte(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0,
                                nullptr, nullptr);
    if (n <= 0) {
        return std::string();
    }
    std::string out(static_cast<size_t>(n), '\0');
    WideCharToMultiByte(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), &out[0], n, nullptr,
                        nullptr);
    return out;
}

void Trace(PCWSTR message) noexcept
{
    OutputDebugStringW(L"ancm-rs: ");
    OutputDebugStringW(message);
    OutputDebugStringW(L"\n");
}

} // namespace ancm
