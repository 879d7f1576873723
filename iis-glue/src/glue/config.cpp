// Reading an application's system.webServer/aspNetCore section through IIS's configuration
// system (IAppHostAdminManager) into the engine's configuration builder, key by key, and the
// per-application cache of engine apps.
//
// Translation only: every attribute IIS reports is handed to the engine as UTF-16 text, and
// the engine validates it (ranges, required values, %VAR% expansion). The glue knows no
// attribute except the two collection element names.

#include "glue.h"
#include "websocket.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <utility>
#include <vector>

namespace iisglue {

HTTP_MODULE_ID g_moduleId = nullptr;
IHttpServer *g_server = nullptr;

namespace {

// Owns a BSTR (the admin manager's arguments are BSTRs; IIS may rely on the length prefix, so
// a plain wide string literal is not enough).
class Bstr {
public:
    explicit Bstr(PCWSTR s) : b_(SysAllocString(s)) {}
    Bstr() : b_(nullptr) {}
    ~Bstr() { SysFreeString(b_); }
    Bstr(const Bstr &) = delete;
    Bstr &operator=(const Bstr &) = delete;
    BSTR get() const { return b_; }
    BSTR *put() { return &b_; }

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

// A 100 ns tick count as .NET's TimeSpan text ([d.]hh:mm:ss[.fffffff]), the form the engine
// reads for timeSpan attributes.
std::wstring TicksToTimeSpan(unsigned long long ticks)
{
    const unsigned long long perSecond = 10000000ULL;
    unsigned long long seconds = ticks / perSecond;
    const unsigned long long fraction = ticks % perSecond;
    const unsigned long long days = seconds / 86400;
    seconds %= 86400;
    auto pad = [](unsigned long long v, size_t width) {
        std::wstring t = std::to_wstring(v);
        return std::wstring(t.size() < width ? width - t.size() : 0, L'0') + t;
    };
    std::wstring out;
    if (days > 0) {
        out = std::to_wstring(days) + L".";
    }
    out += pad(seconds / 3600, 2) + L":" + pad((seconds / 60) % 60, 2) + L":" + pad(seconds % 60, 2);
    if (fraction != 0) {
        out += L"." + pad(fraction, 7);
    }
    return out;
}

// Element `i` of a configuration collection, as the IIS configuration API indexes them.
VARIANT IndexVariant(DWORD i)
{
    VARIANT index;
    VariantInit(&index);
    V_VT(&index) = VT_UI4;
    V_UI4(&index) = i;
    return index;
}

// A property value as the text a web.config would hold. IIS hands typed VARIANTs: strings as
// VT_BSTR, bool as VT_BOOL, uint as VT_UI4, and timeSpan as 64-bit ticks (the section has no
// int64 attribute, so a 64-bit integer is a timeSpan). Booleans are spelled true/false
// rather than through VariantChangeType, whose text depends on the locale.
HRESULT VariantToText(VARIANT *v, std::wstring &out)
{
    switch (V_VT(v)) {
    case VT_EMPTY:
    case VT_NULL:
        out.clear();
        return S_OK;
    case VT_BOOL:
        out = V_BOOL(v) != VARIANT_FALSE ? L"true" : L"false";
        return S_OK;
    case VT_I8:
        out = TicksToTimeSpan(V_I8(v) < 0 ? 0ULL : static_cast<unsigned long long>(V_I8(v)));
        return S_OK;
    case VT_UI8:
        out = TicksToTimeSpan(V_UI8(v));
        return S_OK;
    case VT_BSTR:
        break;
    default: {
        HRESULT hr = VariantChangeType(v, v, 0, VT_BSTR);
        if (FAILED(hr)) {
            return hr;
        }
        break;
    }
    }
    BSTR s = V_BSTR(v);
    out.assign(s != nullptr ? s : L"", s != nullptr ? SysStringLen(s) : 0);
    return S_OK;
}

HRESULT ReadProperty(IAppHostElement *element, PCWSTR name, std::wstring &out)
{
    Bstr bname(name);
    if (bname.get() == nullptr) {
        return E_OUTOFMEMORY;
    }
    ComRef<IAppHostProperty> prop;
    HRESULT hr = element->GetPropertyByName(bname.get(), prop.put());
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
    return VariantToText(value.get(), out);
}

HRESULT GetSection(PCWSTR sectionName, PCWSTR configPath, ComRef<IAppHostElement> &out)
{
    if (g_server == nullptr || configPath == nullptr) {
        return E_INVALIDARG;
    }
    IAppHostAdminManager *admin = g_server->GetAdminManager();
    if (admin == nullptr) {
        return E_NOINTERFACE;
    }
    Bstr section(sectionName);
    Bstr path(configPath);
    if (section.get() == nullptr || path.get() == nullptr) {
        return E_OUTOFMEMORY;
    }
    HRESULT hr = admin->GetAdminSection(section.get(), path.get(), out.put());
    if (SUCCEEDED(hr) && out.get() == nullptr) {
        hr = E_POINTER;
    }
    return hr;
}

// Owns an ancm_error.
struct ErrorFree {
    void operator()(ancm_error *e) const noexcept { ancm_error_free(e); }
};
using ErrorPtr = std::unique_ptr<ancm_error, ErrorFree>;
struct BuilderFree {
    void operator()(ancm_config_builder *b) const noexcept { ancm_config_builder_free(b); }
};
using BuilderPtr = std::unique_ptr<ancm_config_builder, BuilderFree>;

const uint16_t *U16(const std::wstring &s)
{
    // wchar_t is UTF-16 on Windows (MSVC and mingw alike).
    static_assert(sizeof(wchar_t) == sizeof(uint16_t), "UTF-16 wchar_t");
    return reinterpret_cast<const uint16_t *>(s.data());
}

std::string HresultText(const char *what, HRESULT hr)
{
    char buf[160];
    snprintf(buf, sizeof buf, "%s failed (HRESULT 0x%08lX)", what, static_cast<unsigned long>(hr));
    return buf;
}

// Calls `each` with every item of the collection element `name` (false from it stops, with
// `error` set). IIS has already applied <remove>/<clear>, so the collection is the effective
// list. A schema without the collection has nothing to add.
template <typename Each>
bool ForEachItem(IAppHostElement *section, PCWSTR name, std::string &error, Each each)
{
    Bstr bname(name);
    ComRef<IAppHostElement> element;
    HRESULT hr = section->GetElementByName(bname.get(), element.put());
    if (FAILED(hr) || element.get() == nullptr) {
        return true;
    }
    ComRef<IAppHostElementCollection> collection;
    hr = element.get()->get_Collection(collection.put());
    if (FAILED(hr) || collection.get() == nullptr) {
        error = HresultText("reading a configuration collection", hr);
        return false;
    }
    DWORD count = 0;
    hr = collection.get()->get_Count(&count);
    if (FAILED(hr)) {
        error = HresultText("reading a configuration collection", hr);
        return false;
    }
    for (DWORD i = 0; i < count; ++i) {
        ComRef<IAppHostElement> item;
        hr = collection.get()->get_Item(IndexVariant(i), item.put());
        if (FAILED(hr) || item.get() == nullptr) {
            error = HresultText("reading a configuration collection entry", hr);
            return false;
        }
        if (!each(item.get())) {
            return false;
        }
    }
    return true;
}

// The engine's verdict on one builder call: false with its message in `error`.
bool Accepted(ancm_result r, ancm_error *e, std::string &error)
{
    ErrorPtr owned(e);
    if (r != ANCM_RESULT_OK) {
        error = owned ? ancm_error_message(owned.get()) : ancm_result_message(r);
        return false;
    }
    return true;
}

// Adds every <add name value> of the collection element `name` with `add` (the UTF-16
// environmentVariables or handlerSettings call).
bool AddCollection(IAppHostElement *section, PCWSTR name, ancm_config_builder *builder,
                   ancm_result (*add)(ancm_config_builder *, const uint16_t *, size_t,
                                      const uint16_t *, size_t, ancm_error **),
                   std::string &error)
{
    return ForEachItem(section, name, error, [&](IAppHostElement *item) {
        std::wstring key, value;
        HRESULT hr = ReadProperty(item, L"name", key);
        if (SUCCEEDED(hr)) {
            hr = ReadProperty(item, L"value", value);
        }
        if (FAILED(hr)) {
            error = HresultText("reading a configuration collection entry", hr);
            return false;
        }
        ancm_error *e = nullptr;
        ancm_result r = add(builder, U16(key), key.size(), U16(value), value.size(), &e);
        return Accepted(r, e, error);
    });
}

// Adds every <file path> of recycleOnFileChange (the schema's `path` is expanded="true": IIS
// returns it with %VARIABLES% already expanded).
bool AddRecycleFiles(IAppHostElement *section, ancm_config_builder *builder, std::string &error)
{
    return ForEachItem(section, L"recycleOnFileChange", error, [&](IAppHostElement *item) {
        std::wstring path;
        HRESULT hr = ReadProperty(item, L"path", path);
        if (FAILED(hr)) {
            error = HresultText("reading a recycleOnFileChange entry", hr);
            return false;
        }
        ancm_error *e = nullptr;
        ancm_result r = ancm_config_builder_add_recycle_on_file_change_utf16(
            builder, U16(path), path.size(), &e);
        return Accepted(r, e, error);
    });
}

bool BuildConfigImpl(PCWSTR configPath, ConfigPtr &out, std::string &error)
{
    ComRef<IAppHostElement> section;
    HRESULT hr = GetSection(L"system.webServer/aspNetCore", configPath, section);
    if (FAILED(hr)) {
        error = HresultText("reading system.webServer/aspNetCore", hr);
        return false;
    }
    const std::string source = ToUtf8(configPath, wcslen(configPath));
    ancm_config_builder *raw = nullptr;
    ancm_result r = ancm_config_builder_new(reinterpret_cast<const uint8_t *>(source.data()),
                                            source.size(), ANCM_DIALECT_ASP_NET_CORE, &raw);
    if (r != ANCM_RESULT_OK) {
        error = ancm_result_message(r);
        return false;
    }
    BuilderPtr builder(raw);

    // Every attribute IIS reports (its schema's defaults included), by name.
    ComRef<IAppHostPropertyCollection> props;
    hr = section.get()->get_Properties(props.put());
    DWORD count = 0;
    if (SUCCEEDED(hr) && props.get() != nullptr) {
        hr = props.get()->get_Count(&count);
    } else if (SUCCEEDED(hr)) {
        hr = E_POINTER;
    }
    if (FAILED(hr)) {
        error = HresultText("reading the aspNetCore attributes", hr);
        return false;
    }
    for (DWORD i = 0; i < count; ++i) {
        ComRef<IAppHostProperty> prop;
        Bstr name;
        Variant value;
        std::wstring text;
        hr = props.get()->get_Item(IndexVariant(i), prop.put());
        if (SUCCEEDED(hr) && prop.get() == nullptr) {
            hr = E_POINTER;
        }
        if (SUCCEEDED(hr)) {
            hr = prop.get()->get_Name(name.put());
        }
        if (SUCCEEDED(hr)) {
            hr = prop.get()->get_Value(value.get());
        }
        if (SUCCEEDED(hr)) {
            hr = VariantToText(value.get(), text);
        }
        if (FAILED(hr)) {
            error = HresultText("reading an aspNetCore attribute", hr);
            return false;
        }
        const std::wstring key(name.get() != nullptr ? name.get() : L"",
                               name.get() != nullptr ? SysStringLen(name.get()) : 0);
        ancm_error *e = nullptr;
        r = ancm_config_builder_set_utf16(builder.get(), U16(key), key.size(), U16(text),
                                          text.size(), &e);
        ErrorPtr owned(e);
        if (r == ANCM_RESULT_OK) {
            continue;
        }
        // IIS has validated the section against its installed schema, so an attribute the
        // engine does not know comes from another schema version (e.g. Microsoft's, newer):
        // ignore it, as ANCM ignores attributes it does not read.
        if (owned && ancm_error_kind(owned.get()) == ANCM_CONFIG_ERROR_KIND_UNKNOWN_ATTRIBUTE) {
            Trace((L"ignoring aspNetCore attribute unknown to the engine: " + key).c_str());
            continue;
        }
        error = owned ? ancm_error_message(owned.get()) : ancm_result_message(r);
        return false;
    }
    if (!AddCollection(section.get(), L"environmentVariables", builder.get(),
                       &ancm_config_builder_add_environment_variable_utf16, error) ||
        !AddCollection(section.get(), L"handlerSettings", builder.get(),
                       &ancm_config_builder_add_handler_setting_utf16, error) ||
        !AddRecycleFiles(section.get(), builder.get(), error)) {
        return false;
    }
    ancm_config *config = nullptr;
    ancm_error *e = nullptr;
    r = ancm_config_builder_build(builder.release(), &config, &e);
    ErrorPtr owned(e);
    if (r != ANCM_RESULT_OK) {
        error = owned ? ancm_error_message(owned.get()) : ancm_result_message(r);
        return false;
    }
    out.reset(config);
    return true;
}

// The app's virtual path from its configuration path: MACHINE/WEBROOT/APPHOST/<site>/<path>
// gives /<path>, the site's root application gives /.
std::string AppPathFromConfigPath(const std::wstring &configPath)
{
    static const wchar_t prefix[] = L"MACHINE/WEBROOT/APPHOST/";
    const size_t n = sizeof prefix / sizeof prefix[0] - 1;
    if (configPath.size() < n ||
        CompareStringOrdinal(configPath.c_str(), static_cast<int>(n), prefix,
                             static_cast<int>(n), TRUE) != CSTR_EQUAL) {
        return "/";
    }
    size_t slash = configPath.find(L'/', n); // after the site name
    if (slash == std::wstring::npos || slash + 1 >= configPath.size()) {
        return "/";
    }
    return ToUtf8(configPath.substr(slash));
}

// The site's name from an application's configuration path: MACHINE/WEBROOT/APPHOST/<site>/…
// (IIS names configuration paths after sites). Empty when the path has no site.
std::wstring SiteNameFromConfigPath(const std::wstring &configPath)
{
    static const wchar_t prefix[] = L"MACHINE/WEBROOT/APPHOST/";
    const size_t n = sizeof prefix / sizeof prefix[0] - 1;
    if (configPath.size() <= n ||
        CompareStringOrdinal(configPath.c_str(), static_cast<int>(n), prefix,
                             static_cast<int>(n), TRUE) != CSTR_EQUAL) {
        return std::wstring();
    }
    return configPath.substr(n, configPath.find(L'/', n) - n);
}

// The port of a binding's bindingInformation, "<ip>:<port>:<host name>" (IPv6 addresses are
// bracketed, and host names hold no colon, so the port lies between the first colon after any
// bracket and the last colon). 0 when it is not a port number.
unsigned PortOfBinding(const std::wstring &info)
{
    const size_t bracket = info.find(L']');
    const size_t first = info.find(L':', bracket == std::wstring::npos ? 0 : bracket);
    const size_t last = info.rfind(L':');
    if (first == std::wstring::npos || last == first || last - first < 2 || last - first > 6) {
        return 0;
    }
    unsigned port = 0;
    for (size_t i = first + 1; i < last; ++i) {
        if (info[i] < L'0' || info[i] > L'9') {
            return 0;
        }
        port = port * 10 + static_cast<unsigned>(info[i] - L'0');
    }
    return port <= 65535 ? port : 0;
}

// Whether `path` is `prefix` or lies below it (configuration paths are case-insensitive).
bool IsAtOrUnder(const std::wstring &path, PCWSTR prefix)
{
    size_t n = wcslen(prefix);
    while (n > 0 && prefix[n - 1] == L'/') {
        --n;
    }
    if (path.size() < n || CompareStringOrdinal(path.c_str(), static_cast<int>(n), prefix,
                                                static_cast<int>(n), TRUE) != CSTR_EQUAL) {
        return false;
    }
    return path.size() == n || path[n] == L'/';
}

// The cache, keyed by application id, guarded by an SRW lock (Win32 rather than std::mutex:
// mingw's win32 thread model in GCC 12 has no std::mutex, and MSVC has both).
SRWLOCK g_lock = SRWLOCK_INIT;
std::map<std::wstring, std::shared_ptr<AppEntry>> *g_apps = nullptr; // never freed

std::shared_ptr<AppEntry> Lookup(const std::wstring &id)
{
    AcquireSRWLockShared(&g_lock);
    std::shared_ptr<AppEntry> found;
    if (g_apps != nullptr) {
        auto it = g_apps->find(id);
        if (it != g_apps->end()) {
            found = it->second; // copying a shared_ptr does not throw
        }
    }
    ReleaseSRWLockShared(&g_lock);
    return found;
}

std::shared_ptr<AppEntry> CreateApp(IHttpApplication *application, IHttpContext *ctx)
{
    auto entry = std::make_shared<AppEntry>();
    PCWSTR id = application->GetApplicationId();
    PCWSTR configPath = application->GetAppConfigPath();
    PCWSTR physical = application->GetApplicationPhysicalPath();
    entry->appId = id != nullptr ? id : L"";
    entry->configPath = configPath != nullptr ? configPath : L"";
    ConfigPtr config;
    if (!BuildConfig(entry->configPath.c_str(), config, entry->error)) {
        if (entry->error.empty()) {
            entry->error = "the aspNetCore configuration could not be read";
        }
        Trace((L"configuration error for " + entry->configPath).c_str());
        TraceUtf8(entry->error.data(), entry->error.size());
        // (the engine's message names the configuration path already)
        WriteEvent(ANCM_LOG_LEVEL_ERROR, ANCM_EVENT_CONFIGURATION_LOAD_ERROR,
                   entry->error.data(), entry->error.size());
        return entry;
    }
    const std::string siteRoot = ToUtf8(physical != nullptr ? physical : L"",
                                        physical != nullptr ? wcslen(physical) : 0);
    const std::string appPath = AppPathFromConfigPath(entry->configPath);
    const std::string httpAuth = ReadHttpAuth(entry->configPath.c_str());
    ancm_host_info host;
    host.site_root = ancm::slice(siteRoot);
    host.app_path = ancm::slice(appPath);
    host.http_auth = ancm::slice(httpAuth);
    host.https_port = ReadHttpsPort(entry->configPath.c_str()); // 0: none
    host.websockets_supported = WebSocketsAvailable() && WebSocketModuleServes(ctx);
    ancm_app *app = nullptr;
    ancm_result r = ancm_app_new(config.get(), &host, &app);
    if (r == ANCM_RESULT_OK) {
        entry->app.reset(app);
    } else {
        entry->error = std::string("cannot create the application: ") + ancm_result_message(r);
        TraceUtf8(entry->error.data(), entry->error.size());
    }
    return entry;
}

// Stops and frees outside the cache lock: ancm_app_stop blocks until the processes exit.
void StopEntries(std::vector<std::shared_ptr<AppEntry>> &entries) noexcept
{
    for (auto &entry : entries) {
        if (entry && entry->app) {
            ancm_result r = ancm_app_stop(entry->app.get());
            if (r != ANCM_RESULT_OK) {
                Trace(L"stopping an application failed");
                const char *m = ancm_result_message(r);
                TraceUtf8(m, strlen(m));
            }
        }
        entry.reset(); // frees the app once no request start holds it
    }
}

template <class Pred> void StopWhere(Pred pred) noexcept
{
    std::vector<std::shared_ptr<AppEntry>> removed;
    AcquireSRWLockExclusive(&g_lock);
    try {
        if (g_apps != nullptr) {
            for (auto it = g_apps->begin(); it != g_apps->end();) {
                if (pred(*it->second)) {
                    removed.push_back(it->second);
                    it = g_apps->erase(it);
                } else {
                    ++it;
                }
            }
        }
    } catch (...) {
        // Out of memory while collecting: what was collected is stopped; the rest stays.
    }
    ReleaseSRWLockExclusive(&g_lock);
    StopEntries(removed);
}

} // namespace

bool BuildConfig(PCWSTR configPath, ConfigPtr &out, std::string &error) noexcept
{
    try {
        return BuildConfigImpl(configPath, out, error);
    } catch (...) {
        error = "out of memory reading the configuration";
        return false;
    }
}

std::string ReadHttpAuth(PCWSTR configPath) noexcept
{
    static const struct {
        PCWSTR section;
        const char *token;
    } schemes[] = {
        {L"system.webServer/security/authentication/windowsAuthentication", "windows;"},
        {L"system.webServer/security/authentication/basicAuthentication", "basic;"},
        {L"system.webServer/security/authentication/anonymousAuthentication", "anonymous;"},
    };
    try {
        std::string out;
        for (const auto &s : schemes) {
            ComRef<IAppHostElement> section;
            std::wstring enabled;
            if (SUCCEEDED(GetSection(s.section, configPath, section)) &&
                SUCCEEDED(ReadProperty(section.get(), L"enabled", enabled)) &&
                enabled == L"true") {
                out += s.token;
            }
        }
        return out;
    } catch (...) {
        return std::string();
    }
}

uint16_t ReadHttpsPort(PCWSTR configPath) noexcept
{
    try {
        const std::wstring site = SiteNameFromConfigPath(configPath != nullptr ? configPath : L"");
        ComRef<IAppHostElement> sites;
        ComRef<IAppHostElementCollection> list;
        DWORD count = 0;
        if (site.empty() ||
            FAILED(GetSection(L"system.applicationHost/sites", L"MACHINE/WEBROOT/APPHOST", sites)) ||
            FAILED(sites.get()->get_Collection(list.put())) || list.get() == nullptr ||
            FAILED(list.get()->get_Count(&count))) {
            return 0;
        }
        for (DWORD i = 0; i < count; ++i) {
            ComRef<IAppHostElement> entry;
            std::wstring name;
            if (FAILED(list.get()->get_Item(IndexVariant(i), entry.put())) || entry.get() == nullptr ||
                FAILED(ReadProperty(entry.get(), L"name", name)) ||
                CompareStringOrdinal(name.c_str(), -1, site.c_str(), -1, TRUE) != CSTR_EQUAL) {
                continue;
            }
            Bstr bindingsName(L"bindings");
            ComRef<IAppHostElement> bindings;
            ComRef<IAppHostElementCollection> items;
            DWORD n = 0;
            if (FAILED(entry.get()->GetElementByName(bindingsName.get(), bindings.put())) ||
                bindings.get() == nullptr ||
                FAILED(bindings.get()->get_Collection(items.put())) || items.get() == nullptr ||
                FAILED(items.get()->get_Count(&n))) {
                return 0;
            }
            // ANCM's rule: the https bindings' port when they all agree, else none.
            unsigned port = 0;
            for (DWORD j = 0; j < n; ++j) {
                ComRef<IAppHostElement> binding;
                std::wstring protocol, info;
                if (FAILED(items.get()->get_Item(IndexVariant(j), binding.put())) ||
                    binding.get() == nullptr ||
                    FAILED(ReadProperty(binding.get(), L"protocol", protocol)) ||
                    CompareStringOrdinal(protocol.c_str(), -1, L"https", -1, TRUE) != CSTR_EQUAL ||
                    FAILED(ReadProperty(binding.get(), L"bindingInformation", info))) {
                    continue;
                }
                const unsigned p = PortOfBinding(info);
                if (p == 0 || (port != 0 && p != port)) {
                    return 0;
                }
                port = p;
            }
            return static_cast<uint16_t>(port);
        }
        return 0;
    } catch (...) {
        return 0;
    }
}

std::shared_ptr<AppEntry> GetApp(IHttpContext *ctx) noexcept
{
    try {
        IHttpApplication *application = ctx != nullptr ? ctx->GetApplication() : nullptr;
        if (application == nullptr) {
            return nullptr;
        }
        PCWSTR idp = application->GetApplicationId();
        const std::wstring id(idp != nullptr ? idp : L"");
        std::shared_ptr<AppEntry> found = Lookup(id);
        if (found) {
            return found;
        }
        // Created outside the lock: it calls into IIS's configuration system. Two first
        // requests may both create one; the first inserted wins and the other is freed
        // before any process started (apps start their process on their first request).
        std::shared_ptr<AppEntry> fresh = CreateApp(application, ctx);
        AcquireSRWLockExclusive(&g_lock);
        try {
            if (g_apps == nullptr) {
                g_apps = new std::map<std::wstring, std::shared_ptr<AppEntry>>();
            }
            auto inserted = g_apps->emplace(id, fresh);
            found = inserted.first->second;
        } catch (...) {
            ReleaseSRWLockExclusive(&g_lock);
            throw;
        }
        ReleaseSRWLockExclusive(&g_lock);
        return found;
    } catch (...) {
        return nullptr;
    }
}

void StopApp(PCWSTR appId) noexcept
{
    if (appId == nullptr) {
        return;
    }
    StopWhere([appId](const AppEntry &e) {
        return CompareStringOrdinal(e.appId.c_str(), -1, appId, -1, TRUE) == CSTR_EQUAL;
    });
}

void StopAppsUnder(PCWSTR configPathPrefix) noexcept
{
    if (configPathPrefix == nullptr) {
        return;
    }
    StopWhere([configPathPrefix](const AppEntry &e) {
        return IsAtOrUnder(e.configPath, configPathPrefix);
    });
}

void StopAllApps() noexcept
{
    StopWhere([](const AppEntry &) { return true; });
}

std::string ToUtf8(const wchar_t *s, size_t len)
{
    if (s == nullptr || len == 0) {
        return std::string();
    }
    int n = WideCharToMultiByte(CP_UTF8, 0, s, static_cast<int>(len), nullptr, 0, nullptr,
                                nullptr);
    if (n <= 0) {
        return std::string();
    }
    std::string out(static_cast<size_t>(n), '\0');
    WideCharToMultiByte(CP_UTF8, 0, s, static_cast<int>(len), &out[0], n, nullptr, nullptr);
    return out;
}

void Trace(PCWSTR message) noexcept
{
    OutputDebugStringW(L"ancm-rs: ");
    OutputDebugStringW(message);
    OutputDebugStringW(L"\n");
}

void TraceUtf8(const char *message, size_t len) noexcept
{
    try {
        std::string line("ancm-rs: ");
        line.append(message, len);
        line += "\n";
        OutputDebugStringA(line.c_str());
    } catch (...) {
    }
}

} // namespace iisglue
