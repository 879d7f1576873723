// The emulated IIS: plays IIS's side of the native-module contract against aspnetcore_rs.dll,
// under Wine (or on Windows), with real backends started by the engine.
//
//   iis-emu.exe <path to aspnetcore_rs.dll> <path to backend.exe>
//
// It loads the DLL, calls RegisterModule with its own IHttpModuleRegistrationInfo and
// IHttpServer (whose IAppHostAdminManager serves the system.webServer/aspNetCore section of
// several test applications, typed as IIS types them, with their environmentVariables and
// handlerSettings collections, and the authentication sections), then drives requests as IIS
// does: a fresh CHttpModule per request from the factory (placed in IModuleAllocator memory),
// OnExecuteRequestHandler on a "request thread", RQ_NOTIFICATION_PENDING honoured by
// delivering every completion (asynchronous ReadEntityBody, WriteEntityChunks, Flush, and
// PostCompletion) as OnAsyncCompletion on another thread, one at a time and only after the
// previous notification returned PENDING, Dispose at the end. The HTTP side has no sockets
// except for WebSockets: requests are HTTP_REQUEST structures (raw URL, known and unknown
// headers, TLS client certificate) with server variables, and responses are recorded; a
// WebSocket request comes from a real client socket, and IIS's WebSocket module is played on it
// (websocket_emu.h: IHttpServer2 → IHttpContext3 → named context → IWebSocketContext). The
// backend side is real:
// the engine starts backend.exe (tests/iis-emu/backend.cpp) as a Windows process under Wine.
//
// Every declared interface method is implemented: either with sensible behaviour or, for what
// the module has no business calling, a loud abort naming the method (UNEXPECTED), so a slot
// mix-up or a new dependency cannot pass unnoticed.
//
// Assumption (not stated by Microsoft's docs, and what IIS does in practice): a completion
// that arrives before the notification returns PENDING is delivered only after it has returned.
//
// Output: "ok: …" / "FAIL: …" lines, some responses, then "N passed, M failed".

#include "iis/httpserv_min.h"
#include "ws_wire.h"

#include <sddl.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#define UNEXPECTED()                                                                     \
    do {                                                                                 \
        std::fprintf(stdout, "FAIL: unexpected call to %s\n", __func__);                 \
        std::fflush(stdout);                                                             \
        std::abort();                                                                    \
    } while (0)

namespace {

int g_passed = 0;
int g_failed = 0;

// Requests also run on several threads at once: Check is serialized.
CRITICAL_SECTION g_checkLock;

void Check(bool ok, const std::string &what)
{
    EnterCriticalSection(&g_checkLock);
    std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
    std::fflush(stdout);
    (ok ? g_passed : g_failed)++;
    LeaveCriticalSection(&g_checkLock);
}

std::string Narrow(const std::wstring &s)
{
    if (s.empty()) {
        return std::string();
    }
    int n = WideCharToMultiByte(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0,
                                nullptr, nullptr);
    std::string out(static_cast<size_t>(n), '\0');
    WideCharToMultiByte(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), &out[0], n, nullptr,
                        nullptr);
    return out;
}

// The byte at offset i of generated bodies (backend.cpp's Pattern).
inline unsigned char Pattern(unsigned long long i)
{
    return static_cast<unsigned char>(i * 131 + (i >> 10));
}

std::string Fnv(const std::string &data)
{
    unsigned long long h = 1469598103934665603ULL;
    for (unsigned char c : data) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    char hex[32];
    std::snprintf(hex, sizeof hex, "%016llx", h);
    return hex;
}

std::string PatternBody(size_t n)
{
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) {
        s[i] = static_cast<char>(Pattern(i));
    }
    return s;
}

using wswire::Base64;

bool Contains(const std::string &hay, const std::string &needle)
{
    return hay.find(needle) != std::string::npos;
}

// The value after "key: " on its own line of an echo body, or "".
std::string EchoField(const std::string &body, const std::string &key)
{
    size_t p = body.find(key + ": ");
    if (p == std::string::npos || (p > 0 && body[p - 1] != '\n')) {
        return std::string();
    }
    p += key.size() + 2;
    return body.substr(p, body.find('\n', p) - p);
}

} // namespace

#include "websocket_emu.h"

namespace {

// ---- Configuration: typed values, elements, collections (IAppHostAdminManager & co) ----

// Live COM objects handed to the module: must be back to zero at the end (no leaks).
LONG g_liveComObjects = 0;

// A property value typed as IIS types it: string → VT_BSTR, bool → VT_BOOL, uint → VT_UI4,
// timeSpan → VT_I8 (100 ns ticks).
struct Value {
    VARTYPE vt = VT_BSTR;
    std::wstring s;
    unsigned long long n = 0;
};
Value Str(const std::wstring &s) { Value v; v.vt = VT_BSTR; v.s = s; return v; }
Value Uint(unsigned long n) { Value v; v.vt = VT_UI4; v.n = n; return v; }
Value Bool(bool b) { Value v; v.vt = VT_BOOL; v.n = b ? 1 : 0; return v; }
Value Ticks(unsigned long long t) { Value v; v.vt = VT_I8; v.n = t; return v; }

struct ElementData {
    std::vector<std::pair<std::wstring, Value>> props;
    std::map<std::wstring, std::shared_ptr<ElementData>> children;
    std::vector<std::shared_ptr<ElementData>> items;

    Value *Find(const std::wstring &name)
    {
        for (auto &p : props) {
            if (p.first == name) {
                return &p.second;
            }
        }
        return nullptr;
    }
};

#define COM_COMMON(IFACE)                                                                 \
    HRESULT STDMETHODCALLTYPE QueryInterface(REFIID riid, void **ppv) override            \
    {                                                                                     \
        if (IsEqualIID(riid, IID_IUnknown) || IsEqualIID(riid, IID_##IFACE)) {            \
            *ppv = static_cast<IFACE *>(this);                                            \
            AddRef();                                                                     \
            return S_OK;                                                                  \
        }                                                                                 \
        *ppv = nullptr;                                                                   \
        return E_NOINTERFACE;                                                             \
    }                                                                                     \
    ULONG STDMETHODCALLTYPE AddRef() override { return InterlockedIncrement(&refs_); }    \
    ULONG STDMETHODCALLTYPE Release() override                                            \
    {                                                                                     \
        LONG r = InterlockedDecrement(&refs_);                                            \
        if (r == 0) {                                                                     \
            InterlockedDecrement(&g_liveComObjects);                                      \
            delete this;                                                                  \
        }                                                                                 \
        return static_cast<ULONG>(r);                                                     \
    }                                                                                     \
    LONG refs_ = 1;

class Property final : public IAppHostProperty {
public:
    Property(const std::wstring &name, const Value &value) : name_(name), value_(value)
    {
        InterlockedIncrement(&g_liveComObjects);
    }
    COM_COMMON(IAppHostProperty)
    HRESULT STDMETHODCALLTYPE get_Name(BSTR *p) override
    {
        *p = SysAllocStringLen(name_.data(), static_cast<UINT>(name_.size()));
        return *p ? S_OK : E_OUTOFMEMORY;
    }
    HRESULT STDMETHODCALLTYPE get_Value(VARIANT *v) override
    {
        VariantInit(v);
        V_VT(v) = value_.vt;
        switch (value_.vt) {
        case VT_BOOL: V_BOOL(v) = value_.n ? VARIANT_TRUE : VARIANT_FALSE; return S_OK;
        case VT_UI4: V_UI4(v) = static_cast<ULONG>(value_.n); return S_OK;
        case VT_I8: V_I8(v) = static_cast<LONGLONG>(value_.n); return S_OK;
        default:
            V_BSTR(v) = SysAllocStringLen(value_.s.data(), static_cast<UINT>(value_.s.size()));
            return V_BSTR(v) ? S_OK : E_OUTOFMEMORY;
        }
    }
    HRESULT STDMETHODCALLTYPE put_Value(VARIANT) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE Clear() override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_StringValue(BSTR *) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_Exception(IAppHostPropertyException **) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE GetMetadata(BSTR, VARIANT *) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE SetMetadata(BSTR, VARIANT) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_Schema(IAppHostPropertySchema **) override { UNEXPECTED(); }

private:
    std::wstring name_;
    Value value_;
};

bool IndexOf(const VARIANT &v, size_t count, size_t &out)
{
    if (V_VT(&v) == VT_UI4) {
        out = V_UI4(&v);
    } else if (V_VT(&v) == VT_I4 && V_I4(&v) >= 0) {
        out = static_cast<size_t>(V_I4(&v));
    } else {
        return false;
    }
    return out < count;
}

class PropertyCollection final : public IAppHostPropertyCollection {
public:
    explicit PropertyCollection(std::shared_ptr<ElementData> d) : d_(d)
    {
        InterlockedIncrement(&g_liveComObjects);
    }
    COM_COMMON(IAppHostPropertyCollection)
    HRESULT STDMETHODCALLTYPE get_Count(DWORD *n) override
    {
        *n = static_cast<DWORD>(d_->props.size());
        return S_OK;
    }
    HRESULT STDMETHODCALLTYPE get_Item(VARIANT index, IAppHostProperty **pp) override
    {
        size_t i = 0;
        *pp = nullptr;
        if (!IndexOf(index, d_->props.size(), i)) {
            return HRESULT_FROM_WIN32(ERROR_INVALID_INDEX);
        }
        *pp = new Property(d_->props[i].first, d_->props[i].second);
        return S_OK;
    }

private:
    std::shared_ptr<ElementData> d_;
};

class Element;

class ElementCollection final : public IAppHostElementCollection {
public:
    explicit ElementCollection(std::shared_ptr<ElementData> d) : d_(d)
    {
        InterlockedIncrement(&g_liveComObjects);
    }
    COM_COMMON(IAppHostElementCollection)
    HRESULT STDMETHODCALLTYPE get_Count(DWORD *n) override
    {
        *n = static_cast<DWORD>(d_->items.size());
        return S_OK;
    }
    HRESULT STDMETHODCALLTYPE get_Item(VARIANT index, IAppHostElement **pp) override;
    HRESULT STDMETHODCALLTYPE AddElement(IAppHostElement *, INT) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE DeleteElement(VARIANT) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE Clear() override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE CreateNewElement(BSTR, IAppHostElement **) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_Schema(IAppHostCollectionSchema **) override { UNEXPECTED(); }

private:
    std::shared_ptr<ElementData> d_;
};

class Element final : public IAppHostElement {
public:
    explicit Element(std::shared_ptr<ElementData> d) : d_(d)
    {
        InterlockedIncrement(&g_liveComObjects);
    }
    COM_COMMON(IAppHostElement)
    HRESULT STDMETHODCALLTYPE get_Name(BSTR *) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_Collection(IAppHostElementCollection **pp) override
    {
        *pp = new ElementCollection(d_);
        return S_OK;
    }
    HRESULT STDMETHODCALLTYPE get_Properties(IAppHostPropertyCollection **pp) override
    {
        *pp = new PropertyCollection(d_);
        return S_OK;
    }
    HRESULT STDMETHODCALLTYPE get_ChildElements(IAppHostChildElementCollection **) override
    {
        UNEXPECTED();
    }
    HRESULT STDMETHODCALLTYPE GetMetadata(BSTR, VARIANT *) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE SetMetadata(BSTR, VARIANT) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_Schema(IAppHostElementSchema **) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE GetElementByName(BSTR name, IAppHostElement **pp) override
    {
        *pp = nullptr;
        auto it = d_->children.find(std::wstring(name, SysStringLen(name)));
        if (it == d_->children.end()) {
            return HRESULT_FROM_WIN32(ERROR_INVALID_INDEX);
        }
        *pp = new Element(it->second);
        return S_OK;
    }
    HRESULT STDMETHODCALLTYPE GetPropertyByName(BSTR name, IAppHostProperty **pp) override
    {
        *pp = nullptr;
        // Like IIS, the BSTR's length prefix is what counts.
        std::wstring key(name, SysStringLen(name));
        Value *v = d_->Find(key);
        if (v == nullptr) {
            return HRESULT_FROM_WIN32(ERROR_INVALID_INDEX);
        }
        *pp = new Property(key, *v);
        return S_OK;
    }
    HRESULT STDMETHODCALLTYPE Clear() override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_Methods(IAppHostMethodCollection **) override { UNEXPECTED(); }

private:
    std::shared_ptr<ElementData> d_;
};

HRESULT STDMETHODCALLTYPE ElementCollection::get_Item(VARIANT index, IAppHostElement **pp)
{
    size_t i = 0;
    *pp = nullptr;
    if (!IndexOf(index, d_->items.size(), i)) {
        return HRESULT_FROM_WIN32(ERROR_INVALID_INDEX);
    }
    *pp = new Element(d_->items[i]);
    return S_OK;
}

using Pairs = std::vector<std::pair<std::wstring, std::wstring>>;

std::shared_ptr<ElementData> Collection(const Pairs &entries)
{
    auto d = std::make_shared<ElementData>();
    for (const auto &e : entries) {
        auto item = std::make_shared<ElementData>();
        item->props.emplace_back(L"name", Str(e.first));
        item->props.emplace_back(L"value", Str(e.second));
        d->items.push_back(item);
    }
    return d;
}

// The aspNetCore section as IIS returns it: every schema attribute (defaults from
// msi/schema/aspnetcore_rs_schema.xml) with its IIS type, then the app's values.
std::shared_ptr<ElementData> AspNetCoreSection(const std::vector<std::pair<std::wstring, Value>> &set,
                                               const Pairs &env, const Pairs &handlers)
{
    auto d = std::make_shared<ElementData>();
    d->props = {
        {L"processPath", Str(L"")},
        {L"arguments", Str(L"")},
        {L"startupTimeLimit", Uint(120)},
        {L"shutdownTimeLimit", Uint(10)},
        {L"rapidFailsPerMinute", Uint(10)},
        {L"requestTimeout", Ticks(2ULL * 60 * 10000000)},
        {L"stdoutLogEnabled", Bool(false)},
        {L"stdoutLogFile", Str(L".\\aspnetcore-stdout")},
        {L"processesPerApplication", Uint(1)},
        {L"forwardWindowsAuthToken", Bool(true)},
        {L"disableStartUpErrorPage", Bool(false)},
        {L"hostingModel", Str(L"")},
    };
    for (const auto &s : set) {
        *d->Find(s.first) = s.second;
    }
    d->children[L"environmentVariables"] = Collection(env);
    d->children[L"handlerSettings"] = Collection(handlers);
    d->children[L"recycleOnFileChange"] = Collection(Pairs());
    return d;
}

std::shared_ptr<ElementData> EnabledSection(bool enabled)
{
    auto d = std::make_shared<ElementData>();
    d->props.emplace_back(L"enabled", Bool(enabled));
    return d;
}

const wchar_t kSitePath[] = L"MACHINE/WEBROOT/APPHOST/Default Web Site";

// One <site> of system.applicationHost/sites as IIS returns it: name, id, and the <bindings>
// collection of <binding protocol bindingInformation="ip:port:host"/>.
std::shared_ptr<ElementData> Site(const std::wstring &name, unsigned long id, const Pairs &bindings)
{
    auto site = std::make_shared<ElementData>();
    site->props.emplace_back(L"name", Str(name));
    site->props.emplace_back(L"id", Uint(id));
    auto list = std::make_shared<ElementData>();
    for (const auto &b : bindings) {
        auto binding = std::make_shared<ElementData>();
        binding->props.emplace_back(L"protocol", Str(b.first));
        binding->props.emplace_back(L"bindingInformation", Str(b.second));
        list->items.push_back(binding);
    }
    site->children[L"bindings"] = list;
    return site;
}

class AdminManager final : public IAppHostAdminManager {
public:
    std::map<std::wstring, std::shared_ptr<ElementData>> sections; // by config path
    int sectionReads = 0;
    // system.applicationHost/sites: lives at the server level only (MACHINE/WEBROOT/APPHOST).
    std::shared_ptr<ElementData> sites = std::make_shared<ElementData>();

    HRESULT STDMETHODCALLTYPE QueryInterface(REFIID riid, void **ppv) override
    {
        if (IsEqualIID(riid, IID_IUnknown) || IsEqualIID(riid, IID_IAppHostAdminManager)) {
            *ppv = this;
            return S_OK;
        }
        *ppv = nullptr;
        return E_NOINTERFACE;
    }
    // Owned by the emulated server for the whole run (as IIS's is): no counting.
    ULONG STDMETHODCALLTYPE AddRef() override { return 2; }
    ULONG STDMETHODCALLTYPE Release() override { return 1; }
    HRESULT STDMETHODCALLTYPE GetAdminSection(BSTR section, BSTR path,
                                              IAppHostElement **pp) override
    {
        *pp = nullptr;
        if (section == nullptr || path == nullptr) {
            return E_INVALIDARG;
        }
        std::wstring s(section, SysStringLen(section));
        std::wstring p(path, SysStringLen(path));
        if (s == L"system.applicationHost/sites") {
            if (p != L"MACHINE/WEBROOT/APPHOST") {
                Check(false, "the sites section read at " + Narrow(p) + ", not at the server");
                return HRESULT_FROM_WIN32(ERROR_INVALID_DATA);
            }
            *pp = new Element(sites);
            return S_OK;
        }
        auto it = sections.find(p);
        if (it == sections.end()) {
            Check(false, "GetAdminSection at an unexpected path: " + Narrow(p));
            return HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND);
        }
        const std::wstring auth = L"system.webServer/security/authentication/";
        if (s == L"system.webServer/aspNetCore") {
            ++sectionReads;
            *pp = new Element(it->second);
        } else if (s == auth + L"anonymousAuthentication") {
            *pp = new Element(EnabledSection(true));
        } else if (s == auth + L"windowsAuthentication" || s == auth + L"basicAuthentication") {
            *pp = new Element(EnabledSection(false));
        } else {
            Check(false, "GetAdminSection of an unexpected section: " + Narrow(s));
            return HRESULT_FROM_WIN32(ERROR_INVALID_DATA);
        }
        return S_OK;
    }
    HRESULT STDMETHODCALLTYPE GetMetadata(BSTR, VARIANT *) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE SetMetadata(BSTR, VARIANT) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_ConfigManager(IAppHostConfigManager **) override
    {
        UNEXPECTED();
    }
};

// ---- The server and module registration ----

class Server final : public IHttpServer2 {
public:
    AdminManager admin;

    BOOL IsCommandLineLaunch() const override { return FALSE; }
    PCWSTR GetAppPoolName() const override { return L"DefaultAppPool"; }
    HRESULT AssociateWithThreadPool(HANDLE, LPOVERLAPPED_COMPLETION_ROUTINE) override
    {
        UNEXPECTED();
    }
    VOID IncrementThreadCount() override { UNEXPECTED(); }
    VOID DecrementThreadCount() override { UNEXPECTED(); }
    VOID ReportUnhealthy(PCWSTR, HRESULT) override { UNEXPECTED(); }
    VOID RecycleProcess(PCWSTR) override { UNEXPECTED(); }
    IAppHostAdminManager *GetAdminManager() const override
    {
        return const_cast<AdminManager *>(&admin);
    }
    HRESULT GetFileInfo(PCWSTR, HANDLE, PSID, PCWSTR, HANDLE, BOOL, IHttpFileInfo **,
                        IHttpTraceContext *) override
    {
        UNEXPECTED();
    }
    HRESULT FlushKernelCache(PCWSTR) override { UNEXPECTED(); }
    HRESULT DoCacheOperation(CACHE_OPERATION, IHttpCacheKey *, IHttpCacheSpecificData **,
                             IHttpTraceContext *) override
    {
        UNEXPECTED();
    }
    GLOBAL_NOTIFICATION_STATUS NotifyCustomNotification(ICustomNotificationProvider *) override
    {
        UNEXPECTED();
    }
    IHttpPerfCounterInfo *GetPerfCounterInfo() override { UNEXPECTED(); }
    VOID RecycleApplication(PCWSTR) override { UNEXPECTED(); }
    VOID NotifyConfigurationChange(PCWSTR) override { UNEXPECTED(); }
    VOID NotifyFileChange(PCWSTR) override { UNEXPECTED(); }
    IDispensedHttpModuleContextContainer *DispenseContainer() override { UNEXPECTED(); }
    HRESULT AddFragmentToCache(HTTP_DATA_CHUNK *, PCWSTR) override { UNEXPECTED(); }
    HRESULT ReadFragmentFromCache(PCWSTR, BYTE *, DWORD, DWORD *) override { UNEXPECTED(); }
    HRESULT RemoveFragmentFromCache(PCWSTR) override { UNEXPECTED(); }
    HRESULT GetWorkerProcessSettings(IWpfSettings **) override { UNEXPECTED(); }
    HRESULT GetProtocolManagerCustomInterface(PCWSTR, PCWSTR, DWORD, PVOID *) override
    {
        UNEXPECTED();
    }
    BOOL SatisfiesPrecondition(PCWSTR, BOOL *) const override { UNEXPECTED(); }
    IHttpTraceContext *GetTraceContext() const override { UNEXPECTED(); }
    HRESULT RegisterFileChangeMonitor(PCWSTR, HANDLE, IHttpFileMonitor **) override
    {
        UNEXPECTED();
    }
    // IIS 8+: HTTP_SERVER_INTERFACE_V2 is this server's IHttpServer2.
    HRESULT GetExtendedInterface(HTTP_SERVER_INTERFACE_VERSION version, PVOID *pp) override
    {
        *pp = nullptr;
        if (version != HTTP_SERVER_INTERFACE_V2) {
            return E_NOINTERFACE;
        }
        *pp = static_cast<IHttpServer2 *>(this);
        return S_OK;
    }
    HRESULT GetToken(PCWSTR, PCWSTR, DWORD, IHttpTokenEntry **, PCWSTR, PSOCKADDR,
                     IHttpTraceContext *) override
    {
        UNEXPECTED();
    }
    PCWSTR GetAppPoolConfigFile(DWORD *) const override { UNEXPECTED(); }
    // (IID_IHttpContext, ctx) → (IID_IHttpContext3, ctx3); defined after Context.
    HRESULT GetExtendedInterfaceByGuid(const GUID &from, PVOID input, const GUID &to,
                                       PVOID *out) override;
    HRESULT GetMetadata(PCWSTR, PCWSTR, IReferencedMetadataInfo **) override { UNEXPECTED(); }
    HRESULT GetWorkerProcessFramework(IWorkerProcessFramework **) override { UNEXPECTED(); }
};

int g_moduleIdTag = 0; // its address is the module id

// Whether IHttpServer2::GetExtendedInterface yields IHttpResponse4 (IIS before Windows Server
// 2022 has none: the call fails with E_NOINTERFACE).
bool g_offerResponse4 = true;

class Registration final : public IHttpModuleRegistrationInfo {
public:
    IHttpModuleFactory *factory = nullptr;
    DWORD requestNotifications = 0;
    DWORD postRequestNotifications = 0;
    CGlobalModule *global = nullptr;
    DWORD globalNotifications = 0;

    PCWSTR GetName() const override { return L"AspNetCoreModuleRs"; }
    HTTP_MODULE_ID GetId() const override { return &g_moduleIdTag; }
    HRESULT SetRequestNotifications(IHttpModuleFactory *f, DWORD req, DWORD post) override
    {
        if (f == nullptr) {
            return E_INVALIDARG;
        }
        factory = f;
        requestNotifications = req;
        postRequestNotifications = post;
        return S_OK;
    }
    HRESULT SetGlobalNotifications(CGlobalModule *g, DWORD n) override
    {
        if (g == nullptr) {
            return E_INVALIDARG;
        }
        global = g;
        globalNotifications = n;
        return S_OK;
    }
    HRESULT SetPriorityForRequestNotification(DWORD, PCWSTR) override { return S_OK; }
    HRESULT SetPriorityForGlobalNotification(DWORD, PCWSTR) override { return S_OK; }
};

// ---- One request ----

class Allocator final : public IModuleAllocator {
public:
    std::vector<void *> blocks;
    VOID *AllocateMemory(DWORD cb) override
    {
        void *p = std::calloc(1, cb);
        if (p != nullptr) {
            blocks.push_back(p);
        }
        return p;
    }
    ~Allocator()
    {
        for (void *p : blocks) {
            std::free(p);
        }
    }
};

class EventProvider final : public IHttpEventProvider {
public:
    HRESULT errorStatus = S_OK;
    VOID SetErrorStatus(HRESULT hr) override { errorStatus = hr; }
};

class CompletionInfo final : public IHttpCompletionInfo {
public:
    DWORD bytes = 0;
    HRESULT status = S_OK;
    DWORD GetCompletionBytes() const override { return bytes; }
    HRESULT GetCompletionStatus() const override { return status; }
};

// An IIS application of the test site.
class Application final : public IHttpApplication {
public:
    std::wstring name, physicalPath, id, configPath;
    // Whether IIS's WebSocket module is in this application's pipeline (installed and
    // enabled): only then does IIS set the WEBSOCKET_VERSION server variable (ANCM's
    // outprocessapplication.cpp, SetWebsocketStatus, notes that the webSocket section may be
    // in applicationHost.config while the module is not enabled).
    bool webSocketModule = true;
    PCWSTR GetApplicationPhysicalPath() const override { return physicalPath.c_str(); }
    PCWSTR GetApplicationId() const override { return id.c_str(); }
    PCWSTR GetAppConfigPath() const override { return configPath.c_str(); }
    IHttpModuleContextContainer *GetModuleContextContainer() override { UNEXPECTED(); }
};

// The connection's module contexts: IIS keeps them for the connection's life and tells the
// connection ones about a disconnect.
class ConnectionContainer final : public IHttpConnectionModuleContextContainer {
public:
    std::map<HTTP_MODULE_ID, IHttpStoredContext *> plain;
    std::map<HTTP_MODULE_ID, IHttpConnectionStoredContext *> conn;
    std::function<void()> beforeGet; // runs when a module looks its context up (see Spec)
    IHttpStoredContext *GetModuleContext(HTTP_MODULE_ID id) override
    {
        auto it = plain.find(id);
        return it == plain.end() ? nullptr : it->second;
    }
    HRESULT SetModuleContext(IHttpStoredContext *c, HTTP_MODULE_ID id) override
    {
        if (plain.count(id) != 0) {
            return HRESULT_FROM_WIN32(ERROR_ALREADY_ASSIGNED);
        }
        plain[id] = c;
        return S_OK;
    }
    IHttpConnectionStoredContext *GetConnectionModuleContext(HTTP_MODULE_ID id) override
    {
        if (beforeGet) {
            std::function<void()> once;
            once.swap(beforeGet);
            once();
        }
        auto it = conn.find(id);
        return it == conn.end() ? nullptr : it->second;
    }
    HRESULT SetConnectionModuleContext(IHttpConnectionStoredContext *c, HTTP_MODULE_ID id) override
    {
        if (conn.count(id) != 0) {
            return HRESULT_FROM_WIN32(ERROR_ALREADY_ASSIGNED);
        }
        conn[id] = c;
        return S_OK;
    }
};

class Connection final : public IHttpConnection {
public:
    ConnectionContainer container;
    volatile LONG connected = 1;
    int disconnectNotified = 0;

    BOOL IsConnected() const override { return connected != 0; }
    VOID *AllocateMemory(DWORD) override { UNEXPECTED(); }
    IHttpConnectionModuleContextContainer *GetModuleContextContainer() override
    {
        return &container;
    }
    // The client went away: IIS tells the connection's stored contexts on one of its threads.
    // `stale` keeps IsConnected() TRUE meanwhile: IIS documents no order between the two, and
    // ANCM checks both (DisconnectHandler::SetHandler: a fired notification, or IsConnected()
    // FALSE), so the emulator can play the harsher one.
    void Disconnect(bool stale = false)
    {
        if (!stale) {
            InterlockedExchange(&connected, 0);
        }
        for (auto &c : container.conn) {
            ++disconnectNotified;
            c.second->NotifyDisconnect();
        }
    }
    // The connection object goes away.
    void Close()
    {
        for (auto &c : container.conn) {
            c.second->CleanupStoredContext();
        }
        for (auto &c : container.plain) {
            c.second->CleanupStoredContext();
        }
        container.conn.clear();
        container.plain.clear();
    }
};

// The request-known header names by HTTP_HEADER_ID (as HTTP.sys parses them).
const char *const kKnown[HttpHeaderRequestMaximum] = {
    "Cache-Control", "Connection", "Date", "Keep-Alive", "Pragma", "Trailer",
    "Transfer-Encoding", "Upgrade", "Via", "Warning", "Allow", "Content-Length",
    "Content-Type", "Content-Encoding", "Content-Language", "Content-Location", "Content-MD5",
    "Content-Range", "Expires", "Last-Modified", "Accept", "Accept-Charset", "Accept-Encoding",
    "Accept-Language", "Authorization", "Cookie", "Expect", "From", "Host", "If-Match",
    "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since", "Max-Forwards",
    "Proxy-Authorization", "Referer", "Range", "TE", "Translate", "User-Agent",
};

struct Spec {
    std::string method = "GET";
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    bool https = false;
    std::string cert; // DER bytes of a client certificate (https only)
    size_t disconnectAfter = 0; // simulate a client disconnect after this many response bytes
    wsemu::WsSession *ws = nullptr; // a WebSocket handshake on a real client socket
    // IHttpUser::GetAuthenticationType of the request's user: empty for anonymous (IIS then
    // still has a user, IUSR, with a token), "Negotiate", "NTLM", "Basic" …
    std::wstring authType;
    // ---- The request path as IIS shapes it (issue 16) ----
    // An inbound URL Rewrite rule rewrote the URL to this (decoded path, then the query as
    // sent): GetUrlChanged() TRUE and CookedUrl the new URL, while pRawUrl stays what the client
    // sent (URL Rewrite keeps the original in UNENCODED_URL / HTTP_X_ORIGINAL_URL).
    std::wstring rewrittenUrl;
    // An Application Initialization (warm-up) request without pRawUrl (before Windows 10 RS2 /
    // Server 2016), or one whose RawUrlLength counts a trailing NUL (ASP.NET Core's
    // IISHttpContext.cs, GetOriginalPath, handles both).
    bool noRawUrl = false;
    bool rawUrlNul = false;
    // The client is gone when the handler runs (IHttpConnection::IsConnected() FALSE, which
    // ANCM's forwardinghandler.cpp checks), or goes while the module attaches to its connection
    // (NotifyDisconnect first, IsConnected() still TRUE: see Connection::Disconnect).
    bool goneAtStart = false;
    bool disconnectOnAttach = false;
    // The user has no primary token, only an impersonation token (IHttpUser documents both;
    // ANCM falls back to the latter: forwardinghandler.cpp, GetHeaders).
    bool noPrimaryToken = false;
    // An HTTP/2 request (issue 19): HTTP.sys hands it to modules as it hands HTTP/1.1 ones, with
    // HTTP_REQUEST.Version 2.0; a body without Content-Length is announced by
    // HTTP_REQUEST_FLAG_MORE_ENTITY_BODY_EXISTS (HTTP_REQUEST's documented Flags), as HTTP/2 has
    // no chunked coding.
    bool http2 = false;
};

// ---- The request's user (Windows authentication) ----

// The token every emulated user carries: the emulator's own process token, a real token the
// module must duplicate into the backend (IIS would hand the logged-on user's). Opened once,
// never closed; the module only borrows it.
HANDLE UserToken()
{
    static HANDLE token = [] {
        HANDLE h = nullptr;
        if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY | TOKEN_DUPLICATE | TOKEN_IMPERSONATE,
                              &h)) {
            return static_cast<HANDLE>(nullptr);
        }
        return h;
    }();
    return token;
}

// The SID of a token's user as text ("S-1-5-…"), or "" if the handle is not a token.
std::string TokenUserSid(HANDLE token)
{
    DWORD size = 0;
    GetTokenInformation(token, TokenUser, nullptr, 0, &size);
    if (size == 0) {
        return std::string();
    }
    std::vector<char> buf(size);
    LPSTR text = nullptr;
    if (!GetTokenInformation(token, TokenUser, buf.data(), size, &size) ||
        !ConvertSidToStringSidA(reinterpret_cast<TOKEN_USER *>(buf.data())->User.Sid, &text)) {
        return std::string();
    }
    std::string out(text);
    LocalFree(text);
    return out;
}

// An impersonation token of the same user (what IIS hands as GetImpersonationToken). Opened
// once, never closed.
HANDLE UserImpersonationToken()
{
    static HANDLE token = [] {
        HANDLE h = nullptr;
        if (!DuplicateTokenEx(UserToken(), TOKEN_QUERY | TOKEN_DUPLICATE | TOKEN_IMPERSONATE,
                              nullptr, SecurityImpersonation, TokenImpersonation, &h)) {
            return static_cast<HANDLE>(nullptr);
        }
        return h;
    }();
    return token;
}

class User final : public IHttpUser {
public:
    explicit User(const std::wstring &authType, bool noPrimary = false)
        : authType_(authType), noPrimary_(noPrimary)
    {
    }
    PCWSTR GetRemoteUserName() override { UNEXPECTED(); }
    PCWSTR GetUserName() override { UNEXPECTED(); }
    PCWSTR GetAuthenticationType() override { return authType_.c_str(); }
    PCWSTR GetPassword() override { UNEXPECTED(); }
    HANDLE GetImpersonationToken() override
    {
        if (!noPrimary_) {
            UNEXPECTED(); // with a primary token the module has no business asking
        }
        return UserImpersonationToken();
    }
    HANDLE GetPrimaryToken() override { return noPrimary_ ? nullptr : UserToken(); }
    VOID ReferenceUser() override { UNEXPECTED(); }
    VOID DereferenceUser() override { UNEXPECTED(); }
    BOOL SupportsIsInRole() override { UNEXPECTED(); }
    HRESULT IsInRole(PCWSTR, BOOL *) override { UNEXPECTED(); }
    PVOID GetUserVariable(PCSTR) override { UNEXPECTED(); }

private:
    std::wstring authType_;
    bool noPrimary_;
};

class Context;

// UTF-8 (invalid sequences replaced) to UTF-16, as HTTP.sys converts URLs for CookedUrl.
std::wstring FromUtf8(const std::string &s)
{
    if (s.empty()) {
        return std::wstring();
    }
    int n = MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
    std::wstring out(static_cast<size_t>(n > 0 ? n : 0), L'\0');
    if (n > 0) {
        MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), &out[0], n);
    }
    return out;
}

// What HTTP.sys makes of a raw target for CookedUrl (HTTP_COOKED_URL: "a validated, canonical,
// UTF-16 Unicode-encoded URL"; ANCM's EscapeAbsPath re-escapes its path because it is decoded):
// the path percent-decoded (%2F becomes /) and read as UTF-8, the query as sent.
std::wstring CookedFromRaw(const std::string &raw)
{
    const size_t q = raw.find('?');
    const std::string path = raw.substr(0, q);
    std::string decoded;
    for (size_t i = 0; i < path.size(); ++i) {
        if (path[i] == '%' && i + 2 < path.size() && std::isxdigit(static_cast<unsigned char>(path[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(path[i + 2]))) {
            decoded.push_back(static_cast<char>(std::stoi(path.substr(i + 1, 2), nullptr, 16)));
            i += 2;
        } else {
            decoded.push_back(path[i]);
        }
    }
    return FromUtf8(decoded) + (q == std::string::npos ? std::wstring() : FromUtf8(raw.substr(q)));
}

class Request final : public IHttpRequest {
public:
    explicit Request(const Spec &spec) : spec_(spec)
    {
        ZeroMemory(&raw_, sizeof raw_);
        raw_.Version.MajorVersion = spec_.http2 ? 2 : 1;
        raw_.Version.MinorVersion = spec_.http2 ? 0 : 1;
        if (!spec_.body.empty()) {
            raw_.Flags |= HTTP_REQUEST_FLAG_MORE_ENTITY_BODY_EXISTS;
        }
        sentUrl_ = spec_.url;
        if (spec_.rawUrlNul) {
            sentUrl_.push_back('\0');
        }
        raw_.pRawUrl = spec_.noRawUrl ? nullptr : sentUrl_.c_str();
        raw_.RawUrlLength = spec_.noRawUrl ? 0 : static_cast<USHORT>(sentUrl_.size());
        // CookedUrl: what IIS has now (after a rewrite, the new URL), in bytes of UTF-16.
        const std::wstring host = L"http://localhost";
        cooked_ = host + (spec_.rewrittenUrl.empty() ? CookedFromRaw(spec_.url) : spec_.rewrittenUrl);
        const size_t q = cooked_.find(L'?', host.size());
        const size_t pathEnd = q == std::wstring::npos ? cooked_.size() : q;
        raw_.CookedUrl.pFullUrl = cooked_.c_str();
        raw_.CookedUrl.FullUrlLength = static_cast<USHORT>(cooked_.size() * sizeof(WCHAR));
        raw_.CookedUrl.pHost = cooked_.c_str() + 7;
        raw_.CookedUrl.HostLength = static_cast<USHORT>((host.size() - 7) * sizeof(WCHAR));
        raw_.CookedUrl.pAbsPath = cooked_.c_str() + host.size();
        raw_.CookedUrl.AbsPathLength = static_cast<USHORT>((pathEnd - host.size()) * sizeof(WCHAR));
        raw_.CookedUrl.pQueryString = q == std::wstring::npos ? nullptr : cooked_.c_str() + q;
        raw_.CookedUrl.QueryStringLength =
            static_cast<USHORT>((cooked_.size() - pathEnd) * sizeof(WCHAR));
        for (const auto &h : spec_.headers) {
            int id = -1;
            for (int i = 0; i < HttpHeaderRequestMaximum; ++i) {
                if (_stricmp(kKnown[i], h.first.c_str()) == 0) {
                    id = i;
                }
            }
            if (id >= 0) {
                raw_.Headers.KnownHeaders[id].pRawValue = h.second.c_str();
                raw_.Headers.KnownHeaders[id].RawValueLength = static_cast<USHORT>(h.second.size());
            } else {
                HTTP_UNKNOWN_HEADER u;
                u.pName = h.first.c_str();
                u.NameLength = static_cast<USHORT>(h.first.size());
                u.pRawValue = h.second.c_str();
                u.RawValueLength = static_cast<USHORT>(h.second.size());
                unknown_.push_back(u);
            }
        }
        raw_.Headers.UnknownHeaderCount = static_cast<USHORT>(unknown_.size());
        raw_.Headers.pUnknownHeaders = unknown_.empty() ? nullptr : unknown_.data();
        if (spec_.https && !spec_.cert.empty()) {
            ZeroMemory(&ssl_, sizeof ssl_);
            ZeroMemory(&cert_, sizeof cert_);
            cert_.CertEncodedSize = static_cast<ULONG>(spec_.cert.size());
            cert_.pCertEncoded = reinterpret_cast<PUCHAR>(&spec_.cert[0]);
            ssl_.pClientCertInfo = &cert_;
            ssl_.SslClientCertNegotiated = TRUE;
            raw_.pSslInfo = &ssl_;
        }
    }
    Context *ctx = nullptr;
    Connection *conn = nullptr;
    int reads = 0;

    const HTTP_REQUEST *GetRawHttpRequestConst() const override { return &raw_; }
    HTTP_REQUEST *GetRawHttpRequest() override { return &raw_; }
    PCSTR GetHeaderById(HTTP_HEADER_ID, USHORT *) const override { UNEXPECTED(); }
    PCSTR GetHeaderByName(PCSTR, USHORT *) const override { UNEXPECTED(); }
    HRESULT SetHeaderById(HTTP_HEADER_ID, PCSTR, USHORT, BOOL) override { UNEXPECTED(); }
    HRESULT SetHeaderByName(PCSTR, PCSTR, USHORT, BOOL) override { UNEXPECTED(); }
    HRESULT DeleteHeaderById(HTTP_HEADER_ID) override { UNEXPECTED(); }
    HRESULT DeleteHeaderByName(PCSTR) override { UNEXPECTED(); }
    PCSTR GetHttpMethod() const override { return spec_.method.c_str(); }
    HRESULT SetHttpMethod(PCSTR) override { UNEXPECTED(); }
    HRESULT SetUrlA(PCSTR, DWORD, BOOL) override { UNEXPECTED(); }
    HRESULT SetUrlW(PCWSTR, DWORD, BOOL) override { UNEXPECTED(); }
    // IHttpRequest::GetUrlChanged: TRUE once a module (URL Rewrite) changed the URL with SetUrl.
    BOOL GetUrlChanged() const override { return spec_.rewrittenUrl.empty() ? FALSE : TRUE; }
    PCWSTR GetForwardedUrl() const override { UNEXPECTED(); }
    PSOCKADDR GetLocalAddress() const override { UNEXPECTED(); }
    PSOCKADDR GetRemoteAddress() const override { UNEXPECTED(); }
    HRESULT ReadEntityBody(VOID *buf, DWORD cb, BOOL fAsync, DWORD *received,
                           BOOL *pending) override;
    HRESULT InsertEntityBody(VOID *, DWORD) override { UNEXPECTED(); }
    DWORD GetRemainingEntityBytes() override
    {
        return static_cast<DWORD>(spec_.body.size() - offset_);
    }
    VOID GetHttpVersion(USHORT *major, USHORT *minor) const override
    {
        *major = raw_.Version.MajorVersion;
        *minor = raw_.Version.MinorVersion;
    }
    HRESULT GetClientCertificate(HTTP_SSL_CLIENT_CERT_INFO **, BOOL *) override { UNEXPECTED(); }
    HRESULT NegotiateClientCertificate(BOOL, BOOL *) override { UNEXPECTED(); }
    DWORD GetSiteId() const override { return 1; }
    HRESULT GetHeaderChanges(DWORD, DWORD *, PCSTR[HttpHeaderRequestMaximum], DWORD *, PCSTR **,
                             PCSTR **, DWORD[HttpHeaderRequestMaximum + 1], DWORD *,
                             DWORD **) override
    {
        UNEXPECTED();
    }
    bool Https() const { return spec_.https; }

private:
    Spec spec_;
    std::string sentUrl_;
    std::wstring cooked_;
    HTTP_REQUEST raw_;
    std::vector<HTTP_UNKNOWN_HEADER> unknown_;
    HTTP_SSL_INFO ssl_;
    HTTP_SSL_CLIENT_CERT_INFO cert_;
    size_t offset_ = 0;
};

// The response headers HTTP.sys keeps in HTTP_RESPONSE_HEADERS.KnownHeaders (one value each),
// except Set-Cookie, which IIS keeps among the unknown headers, one entry per value (ANCM's
// DoReverseRewrite looks for it there).
bool KnownResponseHeader(const char *name)
{
    static const char *const known[] = {
        "Cache-Control", "Connection", "Date", "Keep-Alive", "Pragma", "Trailer",
        "Transfer-Encoding", "Upgrade", "Via", "Warning", "Allow", "Content-Length",
        "Content-Type", "Content-Encoding", "Content-Language", "Content-Location",
        "Content-MD5", "Content-Range", "Expires", "Last-Modified", "Accept-Ranges", "Age",
        "ETag", "Location", "Proxy-Authenticate", "Retry-After", "Server", "Vary",
        "WWW-Authenticate",
    };
    for (const char *k : known) {
        if (_stricmp(k, name) == 0) {
            return true;
        }
    }
    return false;
}

// IHttpResponse4 as IIS 10 on Windows Server 2022 has it (trailers and stream resets for
// HTTP/2; Microsoft Learn, IHttpResponse4). Whether a module can get it at all is the server's
// choice (g_offerResponse4).
class Response final : public IHttpResponse4 {
public:
    // SetTrailer calls in order (name, value, fReplace), and the ResetStream code (-1: none).
    std::vector<std::pair<std::string, std::string>> trailers;
    int trailerReplaces = 0;
    long long resetStream = -1;
    USHORT status = 0;
    USHORT subStatus = 0;
    std::string reason;
    // IIS's own Server header is there before any module runs (IHttpResponse::SetHeader's
    // remarks; ANCM deletes it when the backend sends none).
    std::vector<std::pair<std::string, std::string>> headers = {{"Server", "Microsoft-IIS/10.0"}};
    int unterminatedValues = 0; // SetHeader values not NUL-terminated at their length
    // The last asynchronous WriteEntityChunks with buffering off: IIS documents that its memory
    // must be preserved until the request completes (the harsher of the remark's two
    // sentences), so the emulator reads it again when the request has ended.
    const char *lastAsyncData = nullptr;
    size_t lastAsyncLen = 0;
    std::string lastAsyncFnv;
    std::string body;
    bool headersSent = false;
    bool bufferingDisabled = false;
    bool needDisconnect = false;
    bool reset = false;
    int asyncWrites = 0;
    int flushes = 0;
    Context *ctx = nullptr;
    Connection *conn = nullptr;
    size_t disconnectAfter = 0;
    HANDLE disconnectThread = nullptr;

    const HTTP_RESPONSE *GetRawHttpResponseConst() const override { UNEXPECTED(); }
    HTTP_RESPONSE *GetRawHttpResponse() override { UNEXPECTED(); }
    IHttpCachePolicy *GetCachePolicy() override { UNEXPECTED(); }
    HRESULT SetStatus(USHORT code, PCSTR r, USHORT sub, HRESULT, IAppHostConfigException *,
                      BOOL) override
    {
        if (headersSent) {
            return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
        }
        status = code;
        subStatus = sub;
        reason = r != nullptr ? r : "";
        return S_OK;
    }
    HRESULT SetHeaderById(HTTP_HEADER_ID, PCSTR, USHORT, BOOL) override { UNEXPECTED(); }
    HRESULT SetHeaderByName(PCSTR name, PCSTR value, USHORT cch, BOOL replace) override
    {
        if (name == nullptr || value == nullptr) {
            return E_INVALIDARG;
        }
        if (headersSent) {
            return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
        }
        // PCSTR: a NUL-terminated string, as IIS types it (and ANCM passes it).
        if (value[cch] != '\0') {
            ++unterminatedValues;
        }
        std::string v(value, cch);
        // IHttpResponse::SetHeader: fReplace TRUE replaces the header's value; FALSE appends to
        // it (a known header: one value, joined with a comma) or adds an entry (an unknown
        // header, such as Set-Cookie). The name is recorded as the module passed it.
        for (auto it = headers.begin(); it != headers.end(); ++it) {
            if (_stricmp(it->first.c_str(), name) != 0) {
                continue;
            }
            if (replace) {
                it->first = name;
                it->second = v;
                for (auto rest = it + 1; rest != headers.end();) {
                    rest = _stricmp(rest->first.c_str(), name) == 0 ? headers.erase(rest) : rest + 1;
                }
                return S_OK;
            }
            if (KnownResponseHeader(name)) {
                it->second += ", " + v;
                return S_OK;
            }
            break;
        }
        headers.emplace_back(name, v);
        return S_OK;
    }
    HRESULT DeleteHeaderById(HTTP_HEADER_ID) override { UNEXPECTED(); }
    HRESULT DeleteHeaderByName(PCSTR name) override
    {
        if (name == nullptr) {
            return E_INVALIDARG;
        }
        if (headersSent) {
            return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
        }
        for (auto it = headers.begin(); it != headers.end();) {
            it = _stricmp(it->first.c_str(), name) == 0 ? headers.erase(it) : it + 1;
        }
        return S_OK;
    }
    PCSTR GetHeaderById(HTTP_HEADER_ID, USHORT *) const override { UNEXPECTED(); }
    PCSTR GetHeaderByName(PCSTR, USHORT *) const override { UNEXPECTED(); }
    VOID Clear() override { UNEXPECTED(); }
    VOID ClearHeaders() override { UNEXPECTED(); }
    VOID SetNeedDisconnect() override { needDisconnect = true; }
    VOID ResetConnection() override;
    VOID DisableKernelCache(ULONG) override {}
    BOOL GetKernelCacheEnabled() const override { return FALSE; }
    VOID SuppressHeaders() override { UNEXPECTED(); }
    BOOL GetHeadersSuppressed() const override { return FALSE; }
    HRESULT Flush(BOOL fAsync, BOOL, DWORD *sent, BOOL *completionExpected) override;
    HRESULT Redirect(PCSTR, BOOL, BOOL) override { UNEXPECTED(); }
    HRESULT WriteEntityChunkByReference(HTTP_DATA_CHUNK *, LONG) override { UNEXPECTED(); }
    HRESULT WriteEntityChunks(HTTP_DATA_CHUNK *chunks, DWORD n, BOOL fAsync, BOOL,
                              DWORD *sent, BOOL *completionExpected) override;
    VOID DisableBuffering() override { bufferingDisabled = true; }
    VOID GetStatus(USHORT *, USHORT *, PCSTR *, USHORT *, HRESULT *, PCWSTR *, DWORD *,
                   IAppHostConfigException **, BOOL *) override
    {
        UNEXPECTED();
    }
    HRESULT SetErrorDescription(PCWSTR, DWORD, BOOL) override { return S_OK; }
    PCWSTR GetErrorDescription(DWORD *) override { UNEXPECTED(); }
    HRESULT GetHeaderChanges(DWORD, DWORD *, PCSTR[HttpHeaderResponseMaximum], DWORD *, PCSTR **,
                             PCSTR **, DWORD[HttpHeaderResponseMaximum + 1], DWORD *,
                             DWORD **) override
    {
        UNEXPECTED();
    }
    VOID CloseConnection() override { UNEXPECTED(); }
    HRESULT WriteEntityChunksWithCallback(HTTP_DATA_CHUNK *, DWORD, BOOL, BOOL,
                                          PFN_ASYNC_COMPLETION, void *, DWORD *, BOOL *) override
    {
        UNEXPECTED();
    }
    HRESULT FlushWithCallback(BOOL, BOOL, PFN_ASYNC_COMPLETION, void *, DWORD *, BOOL *) override
    {
        UNEXPECTED();
    }
    HRESULT PushPromise(PCSTR, PCWSTR, PCWSTR, DWORD, PCSTR *, PCSTR *) override { UNEXPECTED(); }
    HRESULT DeleteTrailer(PCSTR) override { UNEXPECTED(); }
    PCSTR GetTrailer(PCSTR, USHORT *) override { UNEXPECTED(); }
    // The stream ends with RST_STREAM(errorCode); nothing more goes to the client.
    VOID ResetStream(ULONG errorCode) override { resetStream = errorCode; }
    VOID SetNeedGoAway() override { UNEXPECTED(); }
    // Trailers go out after the last body data. The harsher reading of the PCSTR value: a
    // NUL-terminated string at its length, as SetHeader's (a null pointer is refused, also for
    // an empty value).
    HRESULT SetTrailer(PCSTR name, PCSTR value, USHORT cch, BOOL replace) override
    {
        if (name == nullptr || value == nullptr || value[cch] != '\0' || resetStream >= 0) {
            return E_INVALIDARG;
        }
        trailerReplaces += replace ? 1 : 0;
        trailers.emplace_back(name, std::string(value, cch));
        return S_OK;
    }

private:
    static DWORD WINAPI DisconnectThread(LPVOID param)
    {
        static_cast<Connection *>(param)->Disconnect();
        return 0;
    }
};

// The request context. Completion plumbing: PostCompletion and every asynchronous operation
// queue a completion; the completion thread delivers them one at a time as OnAsyncCompletion
// once the current notification has returned PENDING, until a call returns something else.
class Context final : public IHttpContext3, public INamedContextContainer {
public:
    Context(Application *app, Connection *conn, Request *req, Response *resp)
        : app_(app), conn_(conn), req_(req), resp_(resp)
    {
        InitializeCriticalSection(&lock_);
        InitializeConditionVariable(&changed_);
    }
    ~Context() { DeleteCriticalSection(&lock_); }

    CHttpModule *module = nullptr;
    EventProvider provider;
    DWORD requestThread = 0;
    DWORD completionThread = 0;
    int completionsDelivered = 0;
    bool overlappingIo = false; // two asynchronous operations outstanding at once

    // Queues an asynchronous operation's completion.
    void QueueIo(DWORD bytes, HRESULT hr)
    {
        EnterCriticalSection(&lock_);
        if (ioOutstanding_ > 0) {
            overlappingIo = true;
        }
        ++ioOutstanding_;
        posted_.push_back(Posted{bytes, hr, true});
        WakeAllConditionVariable(&changed_);
        LeaveCriticalSection(&lock_);
    }

    // Runs the notification on this thread, then, if PENDING, waits for the completions.
    REQUEST_NOTIFICATION_STATUS Run(DWORD timeoutMs)
    {
        requestThread = GetCurrentThreadId();
        REQUEST_NOTIFICATION_STATUS st = module->OnExecuteRequestHandler(this, &provider);
        EnterCriticalSection(&lock_);
        if (st != RQ_NOTIFICATION_PENDING) {
            bool stray = !posted_.empty();
            done_ = true;
            LeaveCriticalSection(&lock_);
            Check(!stray, "no completion left over when the handler did not pend");
            return st;
        }
        pending_ = true;
        WakeAllConditionVariable(&changed_);
        HANDLE t = CreateThread(nullptr, 0, &Context::CompletionThread, this, 0, nullptr);
        if (t == nullptr) {
            LeaveCriticalSection(&lock_);
            Check(false, "create the completion thread");
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
        // IIS would not block a thread here; the emulator waits (with a deadline) for the
        // module to finish the request.
        DWORD deadline = GetTickCount() + timeoutMs;
        while (!done_) {
            DWORD now = GetTickCount();
            if (now >= deadline ||
                !SleepConditionVariableCS(&changed_, &lock_, deadline - now)) {
                break;
            }
        }
        bool finished = done_;
        st = final_;
        if (!finished) {
            stop_ = true; // the completion thread gives up
            WakeAllConditionVariable(&changed_);
        }
        LeaveCriticalSection(&lock_);
        WaitForSingleObject(t, INFINITE);
        CloseHandle(t);
        Check(finished, "the module finished the pending request within " +
                            std::to_string(timeoutMs / 1000) + " s");
        return finished ? st : RQ_NOTIFICATION_FINISH_REQUEST;
    }

    IHttpSite *GetSite() override { UNEXPECTED(); }
    IHttpApplication *GetApplication() override { return app_; }
    IHttpConnection *GetConnection() override { return conn_; }
    IHttpRequest *GetRequest() override { return req_; }
    IHttpResponse *GetResponse() override { return resp_; }
    BOOL GetResponseHeadersSent() const override { return resp_->headersSent; }
    IHttpUser *user = nullptr; // the request's user (IIS always has one, IUSR when anonymous)
    IHttpUser *GetUser() const override { return user; }
    IHttpModuleContextContainer *GetModuleContextContainer() override { UNEXPECTED(); }
    VOID IndicateCompletion(REQUEST_NOTIFICATION_STATUS) override { UNEXPECTED(); }
    HRESULT PostCompletion(DWORD cbBytes) override
    {
        EnterCriticalSection(&lock_);
        if (done_) {
            LeaveCriticalSection(&lock_);
            Check(false, "PostCompletion after the request finished");
            return HRESULT_FROM_WIN32(ERROR_INVALID_STATE);
        }
        posted_.push_back(Posted{cbBytes, S_OK, false});
        WakeAllConditionVariable(&changed_);
        LeaveCriticalSection(&lock_);
        return S_OK;
    }
    VOID DisableNotifications(DWORD, DWORD) override { UNEXPECTED(); }
    BOOL GetNextNotification(REQUEST_NOTIFICATION_STATUS, DWORD *, BOOL *, CHttpModule **,
                             IHttpEventProvider **) override
    {
        UNEXPECTED();
    }
    BOOL GetIsLastNotification(REQUEST_NOTIFICATION_STATUS) override { UNEXPECTED(); }
    HRESULT ExecuteRequest(BOOL, IHttpContext *, DWORD, IHttpUser *, BOOL *) override
    {
        UNEXPECTED();
    }
    DWORD GetExecuteFlags() const override { return 0; }
    HRESULT GetServerVariableA(PCSTR name, PCSTR *value, DWORD *len) override
    {
        const char *v = nullptr;
        if (std::strcmp(name, "REMOTE_ADDR") == 0) {
            v = "203.0.113.7";
        } else if (std::strcmp(name, "REMOTE_PORT") == 0) {
            v = "40123";
        } else if (std::strcmp(name, "HTTPS") == 0) {
            v = req_->Https() ? "on" : "off";
        } else if (std::strcmp(name, "WEBSOCKET_VERSION") == 0) {
            // Set by IIS's WebSocket module; absent without it, and IIS reports an absent
            // variable as ERROR_INVALID_INDEX (the code ANCM's SetWebsocketStatus expects).
            if (!app_->webSocketModule) {
                return HRESULT_FROM_WIN32(ERROR_INVALID_INDEX);
            }
            v = "13";
        } else {
            Check(false, std::string("GetServerVariable of an unexpected variable: ") + name);
            return HRESULT_FROM_WIN32(ERROR_INVALID_INDEX);
        }
        *value = v;
        *len = static_cast<DWORD>(std::strlen(v));
        return S_OK;
    }
    HRESULT GetServerVariableW(PCSTR, PCWSTR *, DWORD *) override { UNEXPECTED(); }
    HRESULT SetServerVariable(PCSTR, PCWSTR) override { UNEXPECTED(); }
    VOID *AllocateRequestMemory(DWORD) override { UNEXPECTED(); }
    IHttpUrlInfo *GetUrlInfo() override { UNEXPECTED(); }
    IMetadataInfo *GetMetadata() override { UNEXPECTED(); }
    PCWSTR GetPhysicalPath(DWORD *) override { UNEXPECTED(); }
    PCWSTR GetScriptName(DWORD *) const override { UNEXPECTED(); }
    PCWSTR GetScriptTranslated(DWORD *) override { UNEXPECTED(); }
    IScriptMapInfo *GetScriptMap() const override { UNEXPECTED(); }
    VOID SetRequestHandled() override {}
    IHttpFileInfo *GetFileInfo() const override { UNEXPECTED(); }
    HRESULT MapPath(PCWSTR, PWSTR, DWORD *) override { UNEXPECTED(); }
    HRESULT NotifyCustomNotification(ICustomNotificationProvider *, BOOL *) override
    {
        UNEXPECTED();
    }
    IHttpContext *GetParentContext() const override { return nullptr; }
    IHttpContext *GetRootContext() const override { return const_cast<Context *>(this); }
    HRESULT CloneContext(DWORD, IHttpContext **) override { UNEXPECTED(); }
    HRESULT ReleaseClonedContext() override { UNEXPECTED(); }
    HRESULT GetCurrentExecutionStats(DWORD *, DWORD *, PCWSTR *, DWORD *, DWORD *,
                                     DWORD *) const override
    {
        UNEXPECTED();
    }
    IHttpTraceContext *GetTraceContext() const override { UNEXPECTED(); }
    HRESULT GetServerVarChanges(DWORD, DWORD *, DWORD *, PCSTR **, PCWSTR **, DWORD *,
                                DWORD **) override
    {
        UNEXPECTED();
    }
    // Cancels the request's outstanding I/O; after an upgrade that is the WebSocket's
    // (websocket_emu.h says how far it gets).
    HRESULT CancelIo() override
    {
        if (ws == nullptr) {
            UNEXPECTED();
        }
        ws->CancelFromContext();
        return S_OK;
    }
    HRESULT MapHandler(DWORD, PCWSTR, PCWSTR, PCSTR, IScriptMapInfo **, BOOL) override
    {
        UNEXPECTED();
    }
    HRESULT GetExtendedInterface(HTTP_CONTEXT_INTERFACE_VERSION, PVOID *pp) override
    {
        *pp = nullptr;
        return E_NOINTERFACE;
    }

    // ---- IHttpContext2/3 and the named contexts (WebSockets) ----
    wsemu::WsSession *ws = nullptr; // the request's client socket, for an upgrade
    int fullDuplexCalls = 0;
    IHttpUser *GetOriginalUser() const override { UNEXPECTED(); }
    INamedContextContainer *GetNamedContextContainer() override { return this; }
    VOID EnableFullDuplex() override { ++fullDuplexCalls; }
    HRESULT InheritServerVariable(PCSTR, BOOL) override { UNEXPECTED(); }
    HRESULT PostCompletionWithCallback(DWORD, LPOVERLAPPED_COMPLETION_ROUTINE, void *) override
    {
        UNEXPECTED();
    }
    // IIS's WebSocket module offers its context once the 101 has been flushed.
    IHttpStoredContext *GetNamedContext(LPCWSTR name) override
    {
        if (name == nullptr || std::wcscmp(name, L"websockets") != 0 || ws == nullptr) {
            return nullptr;
        }
        return ws->Named();
    }
    HRESULT SetNamedContext(IHttpStoredContext *, LPCWSTR) override { UNEXPECTED(); }

private:
    struct Posted {
        DWORD bytes;
        HRESULT hr;
        bool io;
    };

    static DWORD WINAPI CompletionThread(LPVOID param)
    {
        Context *self = static_cast<Context *>(param);
        self->completionThread = GetCurrentThreadId();
        EnterCriticalSection(&self->lock_);
        for (;;) {
            while (!self->stop_ && (self->posted_.empty() || !self->pending_)) {
                SleepConditionVariableCS(&self->changed_, &self->lock_, INFINITE);
            }
            if (self->stop_) {
                break;
            }
            Posted p = self->posted_.front();
            self->posted_.erase(self->posted_.begin());
            if (p.io) {
                --self->ioOutstanding_; // complete from IIS's side: a new one may start
            }
            self->pending_ = false;
            LeaveCriticalSection(&self->lock_);
            CompletionInfo info;
            info.bytes = p.bytes;
            info.status = p.hr;
            REQUEST_NOTIFICATION_STATUS st = self->module->OnAsyncCompletion(
                self, RQ_EXECUTE_REQUEST_HANDLER, FALSE, &self->provider, &info);
            EnterCriticalSection(&self->lock_);
            ++self->completionsDelivered;
            if (st != RQ_NOTIFICATION_PENDING) {
                if (!self->posted_.empty()) {
                    self->strayAtEnd_ = true;
                }
                self->final_ = st;
                self->done_ = true;
                WakeAllConditionVariable(&self->changed_);
                break;
            }
            self->pending_ = true;
        }
        LeaveCriticalSection(&self->lock_);
        return 0;
    }

    Application *app_;
    Connection *conn_;
    Request *req_;
    Response *resp_;
    CRITICAL_SECTION lock_;
    CONDITION_VARIABLE changed_;
    std::vector<Posted> posted_;
    int ioOutstanding_ = 0;
    bool pending_ = false;
    bool done_ = false;
    bool stop_ = false;

public:
    bool strayAtEnd_ = false;

private:
    REQUEST_NOTIFICATION_STATUS final_ = RQ_NOTIFICATION_CONTINUE;
};

HRESULT Request::ReadEntityBody(VOID *buf, DWORD cb, BOOL fAsync, DWORD *received, BOOL *pending)
{
    *received = 0;
    *pending = FALSE;
    if (!fAsync) {
        UNEXPECTED(); // the module must not block an IIS thread on the client
    }
    if (conn->connected == 0) {
        return HRESULT_FROM_WIN32(ERROR_NETNAME_DELETED);
    }
    if (offset_ >= spec_.body.size()) {
        return HRESULT_FROM_WIN32(ERROR_HANDLE_EOF); // as IIS says "no more"
    }
    // Like HTTP.sys, hand over what "arrived": at most 48 KiB per read here.
    size_t n = spec_.body.size() - offset_;
    if (n > cb) n = cb;
    if (n > 48 * 1024) n = 48 * 1024;
    std::memcpy(buf, spec_.body.data() + offset_, n);
    offset_ += n;
    // Every fourth read completes synchronously, as IIS does when the data is already there.
    if (++reads % 4 == 0) {
        *received = static_cast<DWORD>(n);
        return S_OK;
    }
    *pending = TRUE;
    ctx->QueueIo(static_cast<DWORD>(n), S_OK);
    return S_OK;
}

HRESULT Response::WriteEntityChunks(HTTP_DATA_CHUNK *chunks, DWORD n, BOOL fAsync, BOOL,
                                    DWORD *sent, BOOL *completionExpected)
{
    DWORD total = 0;
    for (DWORD i = 0; i < n; ++i) {
        if (chunks[i].DataChunkType != HttpDataChunkFromMemory) {
            UNEXPECTED();
        }
        body.append(static_cast<const char *>(chunks[i].FromMemory.pBuffer),
                    chunks[i].FromMemory.BufferLength);
        total += chunks[i].FromMemory.BufferLength;
    }
    headersSent = true;
    *sent = 0;
    *completionExpected = FALSE;
    if (disconnectAfter != 0 && body.size() >= disconnectAfter && disconnectThread == nullptr) {
        // The client goes away; IIS notices on another thread.
        disconnectThread = CreateThread(nullptr, 0, &DisconnectThread, conn, 0, nullptr);
    }
    if (!fAsync) {
        *sent = total;
        return S_OK;
    }
    if (bufferingDisabled && n == 1) {
        lastAsyncData = static_cast<const char *>(chunks[0].FromMemory.pBuffer);
        lastAsyncLen = chunks[0].FromMemory.BufferLength;
        lastAsyncFnv = Fnv(std::string(lastAsyncData, lastAsyncLen));
    }
    ++asyncWrites;
    *completionExpected = TRUE;
    // Writes keep succeeding after a disconnect here, so that only NotifyDisconnect can stop
    // the response (the disconnect test proves that path).
    ctx->QueueIo(total, S_OK);
    return S_OK;
}

// The connection is reset; an upgraded request's TCP connection ends with it.
VOID Response::ResetConnection()
{
    reset = true;
    if (ctx->ws != nullptr) {
        ctx->ws->ResetFromResponse();
    }
}

HRESULT Server::GetExtendedInterfaceByGuid(const GUID &from, PVOID input, const GUID &to,
                                           PVOID *out)
{
    *out = nullptr;
    if (IsEqualGUID(from, IID_IHttpResponse) && IsEqualGUID(to, IID_IHttpResponse4) &&
        input != nullptr) {
        if (!g_offerResponse4) {
            return E_NOINTERFACE;
        }
        *out = static_cast<IHttpResponse4 *>(static_cast<Response *>(static_cast<IHttpResponse *>(input)));
        return S_OK;
    }
    if (!IsEqualGUID(from, IID_IHttpContext) || !IsEqualGUID(to, IID_IHttpContext3) ||
        input == nullptr) {
        return E_NOINTERFACE;
    }
    Context *ctx = static_cast<Context *>(static_cast<IHttpContext *>(input));
    *out = static_cast<IHttpContext3 *>(ctx);
    return S_OK;
}

HRESULT Response::Flush(BOOL fAsync, BOOL, DWORD *sent, BOOL *completionExpected)
{
    if (ctx->ws != nullptr && !headersSent) {
        ctx->ws->OnFlush(status, reason, headers); // a 101 goes to the client's socket
    }
    headersSent = true;
    *sent = 0;
    *completionExpected = FALSE;
    ++flushes;
    if (fAsync) {
        *completionExpected = TRUE;
        ctx->QueueIo(0, S_OK);
    }
    return S_OK;
}

struct Result {
    REQUEST_NOTIFICATION_STATUS status = RQ_NOTIFICATION_CONTINUE;
    Response response;
    bool otherThread = false;
    int completions = 0;
    bool overlappingIo = false;
    bool strayAtEnd = false;
    int disconnectNotified = 0;
    DWORD elapsedMs = 0;
    int wsOutstandingAtEnd = 0; // WebSocket operations still pending when the module ended
    long wsTcpClosed = 0;       // IWebSocketContext::CloseTcpConnection calls
    long wsDuplex = 0;          // operations started while one of the other direction was pending
    long wsResets = 0;          // IHttpResponse::ResetConnection calls on the upgraded request
    long wsNullReasonCloses = 0; // SendConnectionClose calls without a reason
};

// One request through the module, as IIS's pipeline would run RQ_EXECUTE_REQUEST_HANDLER, on
// a connection of its own (closed afterwards, which cleans up its stored contexts), or on `on`
// (a keep-alive connection the caller closes). `ended` runs once the request has ended (its
// final notification returned) and before IIS disposes the module.
void RunRequest(Registration &reg, Application &app, const Spec &spec, Result &out,
                DWORD timeoutMs = 60000, Connection *on = nullptr,
                const std::function<void()> &ended = std::function<void()>())
{
    Allocator allocator;
    CHttpModule *module = nullptr;
    HRESULT hr = reg.factory->GetHttpModule(&module, &allocator);
    if (FAILED(hr) || module == nullptr) {
        Check(false, "factory GetHttpModule");
        return;
    }
    DWORD start = GetTickCount();
    Connection own;
    Connection &conn = on != nullptr ? *on : own;
    if (spec.goneAtStart) {
        conn.connected = 0;
    }
    if (spec.disconnectOnAttach) {
        conn.container.beforeGet = [&conn] { conn.Disconnect(true); };
    }
    Request req(spec);
    Context ctx(&app, &conn, &req, &out.response);
    User user(spec.authType, spec.noPrimaryToken);
    ctx.user = &user;
    req.ctx = &ctx;
    req.conn = &conn;
    out.response.ctx = &ctx;
    out.response.conn = &conn;
    out.response.disconnectAfter = spec.disconnectAfter;
    ctx.module = module;
    ctx.ws = spec.ws;
    out.status = ctx.Run(timeoutMs);
    if (spec.ws != nullptr) {
        out.wsOutstandingAtEnd = spec.ws->Outstanding();
    }
    out.otherThread = ctx.completionThread != 0 && ctx.completionThread != ctx.requestThread;
    out.completions = ctx.completionsDelivered;
    out.overlappingIo = ctx.overlappingIo;
    out.strayAtEnd = ctx.strayAtEnd_;
    if (ended) {
        ended();
    }
    module->Dispose();
    if (out.response.disconnectThread != nullptr) {
        WaitForSingleObject(out.response.disconnectThread, INFINITE);
        CloseHandle(out.response.disconnectThread);
        out.response.disconnectThread = nullptr;
    }
    out.disconnectNotified = conn.disconnectNotified;
    if (on == nullptr) {
        conn.Close();
    }
    out.elapsedMs = GetTickCount() - start;
}

void PrintResponse(const char *label, const Result &r)
{
    std::printf("--- %s: notification status %d, %lu ms ---\n", label, static_cast<int>(r.status),
                static_cast<unsigned long>(r.elapsedMs));
    std::printf("HTTP/1.1 %u.%u %s\n", r.response.status, r.response.subStatus,
                r.response.reason.c_str());
    for (const auto &h : r.response.headers) {
        std::printf("%s: %s\n", h.first.c_str(), h.second.c_str());
    }
    const size_t shown = 1200;
    std::printf("\n%s%s--- end ---\n", r.response.body.substr(0, shown).c_str(),
                r.response.body.size() > shown ? "\n[…]\n" : "");
    std::fflush(stdout);
}

std::string Header(const Response &r, const char *name)
{
    for (const auto &h : r.headers) {
        if (_stricmp(h.first.c_str(), name) == 0) {
            return h.second;
        }
    }
    return std::string();
}

// The common checks of a request that went through the engine and ended normally.
void CheckCycle(const Result &r, const std::string &what)
{
    Check(r.status == RQ_NOTIFICATION_CONTINUE && r.completions >= 1 && r.otherThread,
          what + ": PENDING, completions on another thread, ended with CONTINUE");
    Check(!r.overlappingIo, what + ": never two asynchronous IIS operations at once");
    Check(!r.strayAtEnd, what + ": no completion left after the request ended");
}

class ConfigChange final : public IGlobalConfigurationChangeProvider {
public:
    PCWSTR path = kSitePath;
    VOID SetErrorStatus(HRESULT) override {}
    PCWSTR GetChangePath() const override { return path; }
};

class StopListening final : public IGlobalStopListeningProvider {
public:
    VOID SetErrorStatus(HRESULT) override {}
    BOOL DrainRequestsGracefully() const override { return TRUE; }
};

class AppStop final : public IHttpApplicationProvider {
public:
    explicit AppStop(Application *a) : app(a) {}
    Application *app;
    VOID SetErrorStatus(HRESULT) override {}
    IHttpApplication *GetApplication() override { return app; }
};

// A process of the backend, held open by handle so that its id cannot be reused meanwhile.
struct Process {
    HANDLE h = nullptr;
    DWORD pid = 0;
    explicit Process(DWORD id) : pid(id)
    {
        h = id != 0 ? OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, id)
                    : nullptr;
    }
    ~Process()
    {
        if (h != nullptr) {
            CloseHandle(h);
        }
    }
    bool Running() const
    {
        DWORD code = 0;
        return h != nullptr && GetExitCodeProcess(h, &code) && code == STILL_ACTIVE;
    }
    // Waits a little: the engine reports the stop once the process has exited, but Wine may
    // publish the exit code a moment later.
    bool Exited(DWORD ms = 3000) const
    {
        return h != nullptr && WaitForSingleObject(h, ms) == WAIT_OBJECT_0;
    }
};

DWORD PidOf(const Result &r)
{
    return static_cast<DWORD>(std::strtoul(EchoField(r.response.body, "pid").c_str(), nullptr, 10));
}

std::wstring Widen(const std::string &s)
{
    if (s.empty()) {
        return std::wstring();
    }
    int n = MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
    std::wstring out(static_cast<size_t>(n), L'\0');
    MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), &out[0], n);
    return out;
}

// Creates apps\<name>\ beside the emulator with a copy of the backend; returns the app.
bool MakeApp(Application &app, const std::string &name, const std::string &backend)
{
    char cwd[MAX_PATH];
    GetCurrentDirectoryA(MAX_PATH, cwd);
    std::string dir = std::string(cwd) + "\\apps";
    CreateDirectoryA(dir.c_str(), nullptr);
    dir += "\\" + name;
    CreateDirectoryA(dir.c_str(), nullptr);
    DeleteFileA((dir + "\\app_offline.htm").c_str());
    if (!CopyFileA(backend.c_str(), (dir + "\\backend.exe").c_str(), FALSE)) {
        Check(false, "copy the backend into " + dir);
        return false;
    }
    app.name = Widen(name);
    app.physicalPath = Widen(dir + "\\");
    app.id = L"/LM/W3SVC/1/ROOT/" + app.name;
    app.configPath = std::wstring(kSitePath) + L"/" + app.name;
    return true;
}

// Concurrent requests: each thread runs one request to the same application.
struct Parallel {
    Registration *reg;
    Application *app;
    Spec spec;
    Result result;
};

DWORD WINAPI ParallelThread(LPVOID param)
{
    Parallel *p = static_cast<Parallel *>(param);
    RunRequest(*p->reg, *p->app, p->spec, p->result);
    return 0;
}

// ---- The Windows user token and the site's https port ----

// The sites IIS knows, with their bindings: the test site has an https binding (twice, on one
// port, as a site with two host names would), one site has none, one has two https ports.
void SetUpSites(Server &server)
{
    server.admin.sites->items = {
        Site(L"Default Web Site", 1,
             {{L"http", L"*:80:"}, {L"https", L"*:44300:"}, {L"https", L"*:44300:www.example.test"}}),
        Site(L"Plain Site", 2, {{L"http", L"*:8080:"}}),
        Site(L"Mixed Site", 3, {{L"https", L"*:443:"}, {L"http", L"[::1]:81:"}, {L"https", L"*:8443:"}}),
    };
}

// Runs `spec` as `authType` and returns the echo.
Result AsUser(Registration &reg, Application &app, Spec spec, const std::wstring &authType)
{
    spec.authType = authType;
    Result r;
    RunRequest(reg, app, spec, r);
    return r;
}

void RunUserTokenAndHttpsPortTests(Registration &reg, Server &server, const std::string &backend)
{
    Application winauth, noforward, plain, mixed;
    if (!MakeApp(winauth, "winauth", backend) || !MakeApp(noforward, "noforward", backend) ||
        !MakeApp(plain, "plain", backend) || !MakeApp(mixed, "mixed", backend)) {
        return;
    }
    plain.configPath = L"MACHINE/WEBROOT/APPHOST/Plain Site/plain";
    mixed.configPath = L"MACHINE/WEBROOT/APPHOST/Mixed Site/mixed";
    const auto backendOnly = std::vector<std::pair<std::wstring, Value>>{
        {L"processPath", Str(L".\\backend.exe")}, {L"shutdownTimeLimit", Uint(5)}};
    // Two processes: consecutive requests go to different processes (each slot starts in turn).
    auto two = backendOnly;
    two.emplace_back(L"processesPerApplication", Uint(2));
    server.admin.sections[winauth.configPath] = AspNetCoreSection(two, Pairs(), Pairs());
    auto off = backendOnly;
    off.emplace_back(L"forwardWindowsAuthToken", Bool(false));
    server.admin.sections[noforward.configPath] = AspNetCoreSection(off, Pairs(), Pairs());
    server.admin.sections[plain.configPath] = AspNetCoreSection(backendOnly, Pairs(), Pairs());
    server.admin.sections[mixed.configPath] = AspNetCoreSection(backendOnly, Pairs(), Pairs());

    const std::string ourSid = TokenUserSid(UserToken());
    Check(!ourSid.empty(), "the emulated user has a real token (SID " + ourSid + ")");
    Spec echo;
    echo.url = "/winauth/echo";
    echo.headers = {{"Host", "localhost"},
                    {"MS-ASPNETCORE-WINAUTHTOKEN", "1234"}}; // forged by the client: dropped

    // Negotiate and NTLM: the token arrives as a handle that is a valid token in the backend's
    // own process, for each of the two processes.
    Result neg = AsUser(reg, winauth, echo, L"Negotiate");
    PrintResponse("Negotiate user", neg);
    const std::string negHex = EchoField(neg.response.body, "winauth-handle");
    Check(neg.response.status == 200 && !negHex.empty() && negHex != "1234" &&
              Contains(neg.response.body, "header: ms-aspnetcore-winauthtoken: " + negHex + "\n") &&
              negHex.find_first_not_of("0123456789abcdef") == std::string::npos,
          "Negotiate: MS-ASPNETCORE-WINAUTHTOKEN carries a lower-case hex handle (" + negHex +
              "), the client's forged value dropped");
    Check(EchoField(neg.response.body, "winauth-sid") == ourSid,
          "Negotiate: the handle is a token in the backend's process, of the IIS user (" +
              EchoField(neg.response.body, "winauth-sid") + ")");
    Result ntlm = AsUser(reg, winauth, echo, L"NTLM");
    Check(ntlm.response.status == 200 && PidOf(ntlm) != 0 && PidOf(ntlm) != PidOf(neg) &&
              EchoField(ntlm.response.body, "winauth-sid") == ourSid,
          "NTLM: the second process (processesPerApplication=2, pid " +
              std::to_string(PidOf(ntlm)) + ") got its own valid duplicate");
    Result again = AsUser(reg, winauth, echo, L"negotiate");
    Check(again.response.status == 200 && EchoField(again.response.body, "winauth-sid") == ourSid,
          "a later request gets a fresh duplicate (the backend closed the earlier one)");

    // No token: anonymous, Basic, or forwardWindowsAuthToken=false.
    for (const wchar_t *type : {L"", L"Basic"}) {
        Result r = AsUser(reg, winauth, echo, type);
        Check(r.response.status == 200 &&
                  !Contains(r.response.body, "header: ms-aspnetcore-winauthtoken:") &&
                  EchoField(r.response.body, "winauth-handle").empty(),
              std::string("no MS-ASPNETCORE-WINAUTHTOKEN for ") + (*type ? "Basic" : "anonymous") +
                  " users (forged one dropped)");
    }
    echo.url = "/noforward/echo";
    Result offr = AsUser(reg, noforward, echo, L"Negotiate");
    Check(offr.response.status == 200 && !Contains(offr.response.body, "header: ms-aspnetcore-winauthtoken:"),
          "no MS-ASPNETCORE-WINAUTHTOKEN with forwardWindowsAuthToken=false");
    Check(TokenUserSid(UserToken()) == ourSid, "IIS's own token handle is still open (only borrowed)");

    // ASPNETCORE_ANCM_HTTPS_PORT from the site's https bindings.
    Check(Contains(neg.response.body, "env: ASPNETCORE_ANCM_HTTPS_PORT=44300\n"),
          "ASPNETCORE_ANCM_HTTPS_PORT=44300 from the site's https bindings");
    echo.url = "/plain/echo";
    Result pr = AsUser(reg, plain, echo, L"");
    Check(pr.response.status == 200 && !Contains(pr.response.body, "ASPNETCORE_ANCM_HTTPS_PORT"),
          "no ASPNETCORE_ANCM_HTTPS_PORT for a site without an https binding");
    echo.url = "/mixed/echo";
    Result mr = AsUser(reg, mixed, echo, L"");
    Check(mr.response.status == 200 && !Contains(mr.response.body, "ASPNETCORE_ANCM_HTTPS_PORT"),
          "no ASPNETCORE_ANCM_HTTPS_PORT when the site's https bindings use different ports");

    // Event Log entries only a crash or a broken stdout log brings (xtask checks them in
    // Wine's trace): with rapidFailsPerMinute=0 the first crash is over the limit (1030, 1003);
    // a stdout log under a drive that does not exist cannot be created (1004).
    Application crashy;
    if (MakeApp(crashy, "crashy", backend)) {
        auto once = backendOnly;
        once.emplace_back(L"rapidFailsPerMinute", Uint(0));
        once.emplace_back(L"stdoutLogEnabled", Bool(true));
        once.emplace_back(L"stdoutLogFile", Str(L"Q:\\no\\such\\place\\stdout"));
        server.admin.sections[crashy.configPath] = AspNetCoreSection(once, Pairs(), Pairs());
        Spec exitSoon;
        exitSoon.url = "/crashy/echo";
        exitSoon.headers = {{"Host", "localhost"}};
        Result first = AsUser(reg, crashy, exitSoon, L"");
        Process crashed(PidOf(first));
        Check(first.response.status == 200 && crashed.Running(),
              "an app whose stdout log cannot be created still starts");
        exitSoon.url = "/crashy/exit-soon";
        Result cr = AsUser(reg, crashy, exitSoon, L"");
        Check(cr.response.status == 200 && cr.response.body == "exiting\n" && crashed.Exited(10000),
              "its process exits (code 5) after answering");
        Sleep(200); // (the engine's reaper sees the same exit)
        Result after = AsUser(reg, crashy, exitSoon, L"");
        Check(after.response.status == 502 && after.response.subStatus == 5,
              "after a crash over rapidFailsPerMinute=0, requests get 502.5");
        AppStop stop(&crashy);
        reg.global->OnGlobalApplicationStop(&stop);
    }

    // Stop what these tests started.
    std::vector<std::unique_ptr<Process>> procs;
    for (const Result *r : {&neg, &ntlm, &offr, &pr, &mr}) {
        procs.emplace_back(new Process(PidOf(*r)));
    }
    for (Application *a : {&winauth, &noforward, &plain, &mixed}) {
        AppStop stop(a);
        reg.global->OnGlobalApplicationStop(&stop);
    }
    bool allExited = true;
    for (const auto &p : procs) {
        allExited = allExited && p->pid != 0 && p->Exited();
    }
    Check(allExited, "GL_APPLICATION_STOP stopped the token and https-port test backends");
}

// ---- WebSockets through the DLL: a real client socket, IIS's WebSocket module emulated ----

// A connected loopback pair: the browser's end and IIS's end.
bool SocketPair(SOCKET &client, SOCKET &server)
{
    client = server = INVALID_SOCKET;
    SOCKET ls = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    sockaddr_in a;
    std::memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int len = sizeof a;
    if (ls == INVALID_SOCKET || bind(ls, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
        listen(ls, 1) != 0 || getsockname(ls, reinterpret_cast<sockaddr *>(&a), &len) != 0) {
        closesocket(ls);
        return false;
    }
    client = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (client == INVALID_SOCKET || connect(client, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        closesocket(ls);
        return false;
    }
    server = accept(ls, nullptr, nullptr);
    closesocket(ls);
    // Not inheritable: the engine starts backends with inherited handles (their output pipes),
    // and a backend holding a copy would keep the connection open after the emulator closed it
    // (IIS's client connections live in HTTP.sys, never in the worker process's handle table).
    SetHandleInformation(reinterpret_cast<HANDLE>(client), HANDLE_FLAG_INHERIT, 0);
    SetHandleInformation(reinterpret_cast<HANDLE>(server), HANDLE_FLAG_INHERIT, 0);
    // A hang guard for the test, not a timing assertion: a stuck read fails instead of hanging.
    DWORD guard = 30000;
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char *>(&guard), sizeof guard);
    setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char *>(&guard), sizeof guard);
    return server != INVALID_SOCKET;
}

const char kWsKey[] = "dGhlIHNhbXBsZSBub25jZQ==";

// The browser's handshake; returns the response head (lower-cased), empty on failure.
std::string WsHandshake(wsemu::WsClient &c)
{
    const std::string req = std::string("GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                                        "Connection: Upgrade\r\nSec-WebSocket-Key: ") +
                            kWsKey +
                            "\r\nSec-WebSocket-Version: 13\r\n"
                            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    if (!wsemu::SendAll(c.s, req.data(), req.size())) {
        return std::string();
    }
    size_t end;
    while ((end = c.buf.find("\r\n\r\n")) == std::string::npos) {
        if (c.Fill() < 0) {
            return std::string();
        }
    }
    std::string head = c.buf.substr(0, end + 4);
    c.buf.erase(0, end + 4);
    for (char &ch : head) {
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    return head;
}

bool WsHandshakeOk(wsemu::WsClient &c, const char *what)
{
    std::string head = WsHandshake(c);
    std::string accept = wswire::AcceptKey(kWsKey);
    for (char &ch : accept) {
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    const bool ok = head.compare(0, 13, "http/1.1 101 ") == 0 &&
                    Contains(head, "\r\nsec-websocket-accept: " + accept + "\r\n") &&
                    Contains(head, "\r\nupgrade: websocket\r\n");
    Check(ok, std::string(what) + ": 101 with the backend's Sec-WebSocket-Accept reached the client");
    return ok;
}

struct WsRun {
    std::function<void(wsemu::WsClient &)> script;
    wsemu::WsClient client;
};

DWORD WINAPI WsClientThread(LPVOID p)
{
    WsRun *run = static_cast<WsRun *>(p);
    run->script(run->client);
    return 0;
}

// One WebSocket request: the browser runs `script` on its thread; IIS's side reads the
// request head from the socket and runs it through the module. `installed` false plays an
// IIS without the WebSocket Protocol feature.
void RunWebSocket(Registration &reg, Application &app, bool installed,
                  std::function<void(wsemu::WsClient &)> script, Result &out, const std::string &what,
                  bool stuckCancel = false, DWORD timeoutMs = 60000)
{
    WsRun run;
    run.script = std::move(script);
    SOCKET server = INVALID_SOCKET;
    if (!SocketPair(run.client.s, server)) {
        Check(false, what + ": loopback socket pair");
        return;
    }
    HANDLE t = CreateThread(nullptr, 0, &WsClientThread, &run, 0, nullptr);
    // IIS's side: the request head as HTTP.sys would parse it.
    std::string buf;
    size_t end;
    char tmp[4096];
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        int k = recv(server, tmp, sizeof tmp, 0);
        if (k <= 0) {
            break;
        }
        buf.append(tmp, static_cast<size_t>(k));
    }
    if (end == std::string::npos) {
        Check(false, what + ": the client's request head");
        closesocket(server);
    } else {
        Spec spec;
        const std::string head = buf.substr(0, end + 2);
        size_t lineEnd = head.find("\r\n");
        const std::string line = head.substr(0, lineEnd);
        size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
        spec.method = line.substr(0, sp1);
        spec.url = line.substr(sp1 + 1, sp2 - sp1 - 1);
        for (size_t at = lineEnd + 2; at < head.size();) {
            size_t e = head.find("\r\n", at);
            std::string h = head.substr(at, e - at);
            at = e + 2;
            size_t colon = h.find(':');
            if (colon != std::string::npos) {
                size_t v = h.find_first_not_of(' ', colon + 1);
                spec.headers.emplace_back(h.substr(0, colon),
                                          v == std::string::npos ? std::string() : h.substr(v));
            }
        }
        wsemu::WsSession *session =
            new wsemu::WsSession(server, buf.substr(end + 4), installed, stuckCancel);
        spec.ws = session;
        RunRequest(reg, app, spec, out, timeoutMs);
        // The request is over: IIS closes the client's connection.
        session->EndConnection();
        if (WaitForSingleObject(t, 60000) != WAIT_OBJECT_0) {
            Check(false, what + ": the client's script ended");
        }
        Check(out.status == RQ_NOTIFICATION_FINISH_REQUEST && !out.strayAtEnd &&
                  out.wsOutstandingAtEnd == 0,
              what + ": the request ended (FINISH_REQUEST) with no WebSocket operation outstanding");
        Check(session->doubleRead == 0 && session->doubleWrite == 0 && session->syncCalls == 0 &&
                  session->unmaskedFrame == 0,
              what + ": at most one read and one write outstanding, all asynchronous");
        std::printf("    (%s: %ld fragments read, %ld written, %ld closes sent, duplex %ld, "
                    "cancels %ld, tcp closes %ld)\n",
                    what.c_str(), session->fragmentsRead, session->fragmentsWritten,
                    session->closesSent, session->duplexSeen, session->cancels, session->tcpClosed);
        std::fflush(stdout);
        out.wsTcpClosed = session->tcpClosed;
        out.wsDuplex = session->duplexSeen;
        out.wsResets = session->resets;
        out.wsNullReasonCloses = session->nullReasonCloses;
        delete session;
    }
    if (t != nullptr) {
        WaitForSingleObject(t, 60000);
        CloseHandle(t);
    }
}

void RunWebSocketTests(Registration &reg, Application &app)
{
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        Check(false, "WSAStartup");
        return;
    }
    // The app learns that WebSockets are available (IIS 8+: IHttpServer2 / IHttpContext3).
    Spec plain;
    plain.url = "/ws-app/echo";
    plain.headers = {{"Host", "localhost"}};
    Result r0;
    RunRequest(reg, app, plain, r0);
    Check(r0.response.status == 200 &&
              Contains(r0.response.body, "env: ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED=true\n"),
          "the app was told ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED=true");
    Process backendProcess(PidOf(r0));

    // 1. Echoes, a large fragmented message, the backend's ping, a client-initiated close.
    Result r1;
    RunWebSocket(reg, app, true, [](wsemu::WsClient &c) {
        if (!WsHandshakeOk(c, "WebSocket echo")) {
            return;
        }
        int good = 0;
        for (int i = 0; i < 200; ++i) {
            const std::string m = "message " + std::to_string(i) + " caf\xc3\xa9";
            unsigned op = 0;
            std::string back;
            if (c.Send(0x1, true, m) && c.ReadMessage(op, back) == 0 && op == 0x1 && back == m) {
                ++good;
            }
        }
        Check(good == 200, "200 text echoes through the DLL, intact (" + std::to_string(good) + ")");
        // 200 KiB binary in three frames (a fragmented message): IIS hands the module pieces of
        // at most its buffer, the engine reframes them, the backend echoes frame by frame.
        std::string big = PatternBody(200 * 1024);
        unsigned op = 0;
        std::string back;
        const bool sent = c.Send(0x2, false, big.substr(0, 100 * 1024)) &&
                          c.Send(0x0, false, big.substr(100 * 1024, 60 * 1024)) &&
                          c.Send(0x0, true, big.substr(160 * 1024));
        // (Each result first: the order in which a call's arguments are evaluated is unspecified.)
        bool ok = sent && c.ReadMessage(op, back) == 0 && op == 0x2 && back.size() == big.size() &&
                  Fnv(back) == Fnv(big);
        Check(ok, "a 200 KiB binary message in 3 fragments came back intact (" +
                      std::to_string(back.size()) + " bytes)");
        ok = c.Send(0x1, true, "ping-me") && c.ReadMessage(op, back) == 0 && op == 0x1 &&
             back == "pong ok";
        Check(ok, "the backend's ping was answered with its payload (by the engine): " + back);
        Check(c.Send(0x8, true, wsemu::ClosePayload(1000, "done")) && c.ReadMessage(op, back) == 0 &&
                  op == 0x8 && back == wsemu::ClosePayload(1000, "done"),
              "client-initiated close: the backend's close (1000 \"done\") reached the client");
        Check(c.Ends(), "client-initiated close: then the connection ended");
    }, r1, "WebSocket echo");
    // Every echo is written while the module's next read is already outstanding.
    Check(r1.wsDuplex > 0, "full duplex: writes went out while a read was outstanding (" +
                               std::to_string(r1.wsDuplex) + " times)");
    Check(r1.response.status == 101 && Header(r1.response, "X-Backend-Saw-Extensions") == "no",
          "the backend got the upgrade without Sec-WebSocket-Extensions (no compression)");

    // 2. The backend closes first.
    Result r2;
    RunWebSocket(reg, app, true, [](wsemu::WsClient &c) {
        if (!WsHandshakeOk(c, "backend-initiated close")) {
            return;
        }
        unsigned op = 0;
        std::string back;
        Check(c.Send(0x1, true, "close-me") && c.ReadMessage(op, back) == 0 && op == 0x8 &&
                  back == wsemu::ClosePayload(4001, "server bye"),
              "backend-initiated close: its close (4001 \"server bye\") reached the client");
        Check(c.Send(0x8, true, wsemu::ClosePayload(4001, "server bye")) && c.Ends(),
              "backend-initiated close: the client answered and the connection ended");
    }, r2, "backend-initiated close");

    // 3. The backend dies mid-stream: the client's connection ends, nothing hangs.
    Result r3;
    RunWebSocket(reg, app, true, [](wsemu::WsClient &c) {
        if (!WsHandshakeOk(c, "backend killed")) {
            return;
        }
        unsigned op = 0;
        std::string back;
        Check(c.Send(0x1, true, "before") && c.ReadMessage(op, back) == 0 && back == "before",
              "backend killed: an echo before");
        Check(c.Send(0x1, true, "die") && c.Ends(),
              "backend killed mid-stream: the client's connection ended (no hang)");
    }, r3, "backend killed");
    Check(backendProcess.pid != 0 && backendProcess.Exited(),
          "backend killed: the backend process had exited");
    Check(r3.wsTcpClosed == 1 && r1.wsTcpClosed == 0 && r2.wsTcpClosed == 0,
          "backend killed: the module closed the client's TCP connection (CloseTcpConnection), "
          "and only then");

    // 3b. The client vanishes without a close: IIS fails the module's read, the module ends the
    // client's side towards the backend, the backend closes, and the request ends.
    Result r3b;
    RunWebSocket(reg, app, true, [](wsemu::WsClient &c) {
        if (!WsHandshakeOk(c, "client vanished")) {
            return;
        }
        unsigned op = 0;
        std::string back;
        Check(c.Send(0x1, true, "last words") && c.ReadMessage(op, back) == 0 && back == "last words",
              "client vanished: an echo before");
        closesocket(c.s); // no close frame
        c.s = INVALID_SOCKET;
    }, r3b, "client vanished");
    Check(r3b.status == RQ_NOTIFICATION_FINISH_REQUEST,
          "client vanished without a close: the backend's connection was ended and the request too");

    // 4. An IIS without the WebSocket Protocol feature: the 101 cannot be served, the
    // connection is closed rather than left open with nothing behind it.
    Result r4;
    RunWebSocket(reg, app, false, [](wsemu::WsClient &c) {
        WsHandshake(c);
        Check(c.Ends(), "no WebSocket feature: the client's connection ended");
    }, r4, "no WebSocket feature");
    Check(r4.response.reset, "no WebSocket feature: the module reset the connection");
    WSACleanup();
}

// ---- The request path as a real IIS shapes it (issue 16 items 1, 5, 6, 8, 9) ----

// Whether the app's backend received a request whose target contained `marker`.
bool BackendSaw(Registration &reg, Application &app, const std::string &marker)
{
    Spec q;
    q.url = "/seen?m=" + marker;
    q.headers = {{"Host", "localhost"}};
    Result r;
    RunRequest(reg, app, q, r);
    return r.response.status != 200 || r.response.body != "seen: no\n";
}

size_t HeaderCount(const Response &r, const char *name)
{
    size_t n = 0;
    for (const auto &h : r.headers) {
        n += _stricmp(h.first.c_str(), name) == 0 ? 1 : 0;
    }
    return n;
}

void RunRequestPathTests(Registration &reg, Application &app)
{
    Spec base;
    base.headers = {{"Host", "localhost"}};

    // 1. URL Rewrite rewrote the path: the backend gets the URL as IIS now has it (CookedUrl,
    // escaped again), not the client's raw one (which would silently ignore every rule).
    Spec rw = base;
    rw.url = "/old/page%2Fx?q=1";
    rw.rewrittenUrl = L"/app/new place/caf\u00e9?q=1&r=<x>";
    Result r1;
    RunRequest(reg, app, rw, r1);
    Check(r1.response.status == 200 &&
              EchoField(r1.response.body, "target") == "/app/new%20place/caf%C3%A9?q=1&r=%3Cx%3E",
          "URL Rewrite: the rewritten URL reached the backend, escaped (" +
              EchoField(r1.response.body, "target") + ")");

    // A warm-up request without pRawUrl is forwarded (its cooked URL), not refused.
    Spec warm = base;
    warm.url = "/app/warmup%2Fa?w=1";
    warm.noRawUrl = true;
    Result r2;
    RunRequest(reg, app, warm, r2);
    Check(r2.response.status == 200 && EchoField(r2.response.body, "target") == "/app/warmup/a?w=1",
          "a warm-up request without pRawUrl was forwarded with its cooked URL (" +
              EchoField(r2.response.body, "target") + ")");
    Spec nul = base;
    nul.url = "/app/warm%2Fnul";
    nul.rawUrlNul = true;
    Result r3;
    RunRequest(reg, app, nul, r3);
    Check(r3.response.status == 200 && EchoField(r3.response.body, "target") == "/app/warm%2Fnul",
          "a pRawUrl whose length counts a trailing NUL is forwarded without it (%2F kept)");

    // Bytes HTTP.sys accepted that a strict parser refuses are escaped, not a 400; every
    // escape the client sent stays as it was.
    Spec odd = base;
    odd.url = "/app/echo%2Fq?a=<b>&c=\"d\"&e=\xff&f=%41";
    Result r4;
    RunRequest(reg, app, odd, r4);
    Check(r4.response.status == 200 &&
              EchoField(r4.response.body, "target") == "/app/echo%2Fq?a=%3Cb%3E&c=%22d%22&e=%FF&f=%41",
          "<, \", non-UTF-8 in the raw URL arrive escaped, %2F and %41 unchanged (" +
              EchoField(r4.response.body, "target") + ")");

    // 5. A client already gone at the start is not forwarded (ANCM: 400, IsConnected() FALSE).
    Spec gone = base;
    gone.url = "/app/echo?marker=gone-at-start";
    gone.goneAtStart = true;
    Result r5;
    RunRequest(reg, app, gone, r5);
    Check(r5.status == RQ_NOTIFICATION_FINISH_REQUEST && r5.response.status == 400 &&
              !BackendSaw(reg, app, "gone-at-start"),
          "a client gone at the start got 400 and the backend never saw the request");

    // A disconnect IIS reported before the next request on the connection attached is
    // remembered: that request is not forwarded either.
    {
        Connection keepAlive;
        Spec first = base;
        first.url = "/app/echo?marker=first-on-connection";
        Result a;
        RunRequest(reg, app, first, a, 60000, &keepAlive);
        Spec second = base;
        second.url = "/app/echo?marker=gone-before-attach";
        second.disconnectOnAttach = true;
        Result b;
        RunRequest(reg, app, second, b, 60000, &keepAlive);
        keepAlive.Close();
        Check(a.response.status == 200 && b.status == RQ_NOTIFICATION_FINISH_REQUEST &&
                  b.response.status == 400 && keepAlive.disconnectNotified == 1 &&
                  !BackendSaw(reg, app, "gone-before-attach"),
              "a disconnect notified before the request attached was remembered: 400, the "
              "backend never saw the request");
    }

    // 6. Response headers replace IIS's own: the backend's Server, not IIS's joined with it;
    // none when the backend sends none; every Set-Cookie; values NUL-terminated.
    Spec hs = base;
    hs.url = "/headers";
    Result r6;
    RunRequest(reg, app, hs, r6);
    PrintResponse("response headers", r6);
    Check(r6.response.status == 200 && Header(r6.response, "Server") == "Kestrel-emu" &&
              HeaderCount(r6.response, "Server") == 1,
          "the backend's Server header replaced IIS's (" + Header(r6.response, "Server") + ")");
    bool cookies = HeaderCount(r6.response, "Set-Cookie") == 2;
    for (const auto &h : r6.response.headers) {
        if (_stricmp(h.first.c_str(), "Set-Cookie") == 0) {
            cookies = cookies && (h.second == "a=1; Path=/" || h.second == "b=2");
        }
    }
    Check(cookies, "both Set-Cookie values arrived as separate headers");
    // ANCM keeps the backend's header-name case (forwardinghandler.cpp, SetStatusAndHeaders
    // passes the names of the backend's raw head to IHttpResponse::SetHeader, which sends them
    // as given): the emulator records names as passed, so compare exactly.
    bool mixedCase = false;
    for (const auto &h : r6.response.headers) {
        mixedCase = mixedCase || (h.first == "X-Backend-Case" && h.second == "Mixed");
    }
    Check(mixedCase, "the backend's mixed-case name reached SetHeader in its case (X-Backend-Case)");
    Spec plain = base;
    plain.url = "/app/echo?marker=no-server";
    Result r6b;
    RunRequest(reg, app, plain, r6b);
    Check(r6b.response.status == 200 && HeaderCount(r6b.response, "Server") == 0,
          "no Server header when the backend sends none (IIS's deleted)");
    Check(r6.response.unterminatedValues == 0 && r6b.response.unterminatedValues == 0,
          "every SetHeader value was NUL-terminated at its length");

    // 8. The bytes of the last asynchronous unbuffered write are still intact when the
    // request has ended, even after another response came through the same backend connection
    // (whose read buffer they would otherwise be reused for).
    Spec life = base;
    life.url = "/app/echo?lifetime=" + std::string(64, 'a');
    Result r8;
    RunRequest(reg, app, life, r8, 60000, nullptr, [&] {
        Spec other = base;
        other.url = "/app/echo?lifetime=" + std::string(64, 'b');
        Result again;
        RunRequest(reg, app, other, again);
        const Response &w = r8.response;
        Check(w.lastAsyncData != nullptr && again.response.status == 200 &&
                  Fnv(std::string(w.lastAsyncData, w.lastAsyncLen)) == w.lastAsyncFnv,
              "the last async write's bytes were intact when the request ended (" +
                  std::to_string(w.lastAsyncLen) + " bytes re-read)");
    });
    Check(r8.response.status == 200 && r8.status == RQ_NOTIFICATION_CONTINUE,
          "the request whose write buffer was re-read ended normally");

    // 9. A user with no primary token: the impersonation token is forwarded.
    Spec tok = base;
    tok.url = "/app/echo?marker=impersonation";
    tok.authType = L"Negotiate";
    tok.noPrimaryToken = true;
    Result r9;
    RunRequest(reg, app, tok, r9);
    const std::string sid = TokenUserSid(UserToken());
    Check(r9.response.status == 200 && !sid.empty() &&
              EchoField(r9.response.body, "winauth-sid") == sid,
          "no primary token: the impersonation token reached the backend (" +
              EchoField(r9.response.body, "winauth-sid") + ")");
}
} // namespace

#include "lifecycle_emu.h"
#include "deploy_emu.h"
#include "http2_emu.h"

namespace {

int Main(int argc, char **argv)
{
    if (argc != 3) {
        std::fprintf(stderr, "usage: iis-emu <aspnetcore_rs.dll> <backend.exe>\n");
        return 2;
    }
    Server server;
    const std::string backend = argv[2];

    // The test site's applications.
    Application mainApp, brokenApp, offlineApp, badApp, badHandlerApp, busyApp, wsApp;
    if (!MakeApp(mainApp, "app", backend) || !MakeApp(brokenApp, "broken", backend) ||
        !MakeApp(wsApp, "ws-app", backend) ||
        !MakeApp(busyApp, "busy", backend) ||
        !MakeApp(offlineApp, "offline", backend) || !MakeApp(badApp, "badconfig", backend) ||
        !MakeApp(badHandlerApp, "badhandler", backend)) {
        std::printf("%d passed, %d failed\n", g_passed, g_failed);
        return 1;
    }
    const Pairs handlers = {{L"debugLevel", L"TRACE"}};
    server.admin.sections[mainApp.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")},
         {L"arguments", Str(L"--name caf\u00e9")},
         {L"shutdownTimeLimit", Uint(5)}},
        {{L"EMU_GREETING", L"hello from IIS"}, {L"EMU_UNICODE", L"caf\u00e9"}}, handlers);
    SetUpSites(server);
    server.admin.sections[busyApp.configPath] =
        AspNetCoreSection({{L"processPath", Str(L".\\backend.exe")}}, Pairs(), Pairs());
    server.admin.sections[wsApp.configPath] =
        AspNetCoreSection({{L"processPath", Str(L".\\backend.exe")}}, Pairs(), Pairs());
    server.admin.sections[brokenApp.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")}, {L"arguments", Str(L"--fail-at-start")}},
        Pairs(), Pairs());
    server.admin.sections[offlineApp.configPath] =
        AspNetCoreSection({{L"processPath", Str(L".\\backend.exe")}}, Pairs(), Pairs());
    server.admin.sections[badApp.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")}, {L"startupTimeLimit", Uint(9999)}}, Pairs(),
        Pairs());
    server.admin.sections[badHandlerApp.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")}}, Pairs(),
        {{L"recycleAfterRequests", L"lots"}});
    {
        std::string page = Narrow(offlineApp.physicalPath) + "app_offline.htm";
        FILE *f = std::fopen(page.c_str(), "wb");
        if (f != nullptr) {
            std::fputs("<html><body>Down for maintenance (emulated)</body></html>", f);
            std::fclose(f);
        }
    }

    HMODULE dll = LoadLibraryA(argv[1]);
    Check(dll != nullptr, "LoadLibrary " + std::string(argv[1]) + " (error " +
                              std::to_string(dll ? 0 : GetLastError()) + ")");
    if (dll == nullptr) {
        std::printf("%d passed, %d failed\n", g_passed, g_failed);
        return 1;
    }
    FARPROC proc = GetProcAddress(dll, MODULE_REGISTERMODULE);
    Check(proc != nullptr, "GetProcAddress RegisterModule");
    if (proc == nullptr) {
        std::printf("%d passed, %d failed\n", g_passed, g_failed);
        return 1;
    }
    PFN_REGISTERMODULE registerModule = reinterpret_cast<PFN_REGISTERMODULE>(
        reinterpret_cast<void *>(proc));

    Registration reg;
    HRESULT hr = registerModule(12, &reg, &server);
    Check(SUCCEEDED(hr), "RegisterModule returned S_OK");
    Check(reg.factory != nullptr && reg.requestNotifications == RQ_EXECUTE_REQUEST_HANDLER &&
              reg.postRequestNotifications == 0,
          "registered for RQ_EXECUTE_REQUEST_HANDLER only");
    const DWORD wantGlobal = GL_CONFIGURATION_CHANGE | GL_STOP_LISTENING | GL_APPLICATION_STOP;
    Check(reg.global != nullptr && reg.globalNotifications == wantGlobal,
          "registered for GL_CONFIGURATION_CHANGE | GL_STOP_LISTENING | GL_APPLICATION_STOP");
    if (reg.factory == nullptr || reg.global == nullptr) {
        std::printf("%d passed, %d failed\n", g_passed, g_failed);
        return 1;
    }

    // 1. The first request starts the app (a real backend process under Wine); the raw URL,
    // the headers, the pairing token and the configuration's environment arrive.
    Spec echo;
    echo.url = "/app/echo%2Fpath?x=1&y=%C3%A9";
    echo.headers = {{"Host", "localhost"}, {"User-Agent", "iis-emu/1"},
                    {"Accept", "text/plain"}, {"X-Custom", "hello"}, {"X-Empty", ""}};
    Result r1;
    RunRequest(reg, mainApp, echo, r1);
    PrintResponse("first request", r1);
    const std::string &b1 = r1.response.body;
    Check(r1.response.status == 200 && r1.response.subStatus == 0, "first request: status 200");
    CheckCycle(r1, "first request");
    Check(EchoField(b1, "target") == "/app/echo%2Fpath?x=1&y=%C3%A9",
          "the raw URL reached the backend (%2F kept)");
    Check(EchoField(b1, "token-ok") == "yes", "the backend checked MS-ASPNETCORE-TOKEN");
    // (the backend lower-cases header names)
    Check(Contains(b1, "header: x-custom: hello\n") && Contains(b1, "header: user-agent: iis-emu/1\n") &&
              Contains(b1, "header: accept: text/plain\n") && Contains(b1, "header: x-empty: \n"),
          "known and unknown request headers arrived");
    Check(Contains(b1, "header: x-forwarded-for: 203.0.113.7:40123\n"),
          "REMOTE_ADDR/REMOTE_PORT arrived as X-Forwarded-For");
    Check(Contains(b1, "header: x-forwarded-proto: http\n"), "HTTPS off arrived as X-Forwarded-Proto: http");
    Check(Contains(b1, "env: EMU_GREETING=hello from IIS\n") &&
              Contains(b1, "env: EMU_UNICODE=caf\xC3\xA9\n"),
          "environmentVariables from the section reached the process (UTF-16 → UTF-8)");
    Check(Contains(b1, "env: ASPNETCORE_APPL_PATH=/app\n"),
          "ASPNETCORE_APPL_PATH from the app's configuration path");
    Check(Contains(b1, "env: ASPNETCORE_IIS_HTTPAUTH=anonymous;\n"),
          "ASPNETCORE_IIS_HTTPAUTH from the authentication sections");
    Check(Header(r1.response, "Content-Type") == "text/plain; charset=utf-8",
          "response headers came through SetHeader");
    Check(r1.response.bufferingDisabled, "DisableBuffering was called");
    Process p1(PidOf(r1));
    Check(p1.pid != 0 && p1.Running(), "the backend process is running (pid " +
                                            std::to_string(p1.pid) + ")");

    // 2. https with a client certificate.
    Spec tls = echo;
    tls.url = "/app/tls";
    tls.https = true;
    tls.cert = std::string("\x30\x82\x01\x0a\x02\x82\x01\x01\x00\xc3\xff\x10", 12);
    Result r2;
    RunRequest(reg, mainApp, tls, r2);
    Check(r2.response.status == 200, "https request: status 200");
    Check(Contains(r2.response.body, "header: x-forwarded-proto: https\n"),
          "HTTPS on arrived as X-Forwarded-Proto: https");
    Check(Contains(r2.response.body, "header: ms-aspnetcore-clientcert: " + Base64(tls.cert) + "\n"),
          "the client certificate (pSslInfo DER) arrived as MS-ASPNETCORE-CLIENTCERT");
    Check(PidOf(r2) == p1.pid, "the second request used the same process");

    // 3. 20 MiB upload, Content-Length, async ReadEntityBody (some completing synchronously).
    const size_t big = 20u * 1024 * 1024;
    Spec up;
    up.method = "POST";
    up.url = "/app/upload";
    up.body = PatternBody(big);
    up.headers = {{"Host", "localhost"}, {"Content-Length", std::to_string(big)},
                  {"Content-Type", "application/octet-stream"}};
    Result r3;
    RunRequest(reg, mainApp, up, r3, 120000);
    Check(r3.response.status == 200 && EchoField(r3.response.body, "body-length") == std::to_string(big) &&
              EchoField(r3.response.body, "body-fnv") == Fnv(up.body),
          "20 MiB upload arrived intact (length and hash), " + std::to_string(r3.elapsedMs) + " ms");
    CheckCycle(r3, "upload");

    // 4. A chunked upload (no Content-Length: the engine is told the length is unknown).
    Spec chunked;
    chunked.method = "POST";
    chunked.url = "/app/chunked";
    chunked.body = PatternBody(1024 * 1024 + 17);
    chunked.headers = {{"Host", "localhost"}, {"Transfer-Encoding", "chunked"}};
    Result r4;
    RunRequest(reg, mainApp, chunked, r4);
    Check(r4.response.status == 200 &&
              EchoField(r4.response.body, "body-length") == std::to_string(chunked.body.size()) &&
              EchoField(r4.response.body, "body-fnv") == Fnv(chunked.body),
          "chunked upload arrived intact");

    // 4b. The backend answers before the upload has ended: reads and writes still never
    // overlap (serialize_io), and both directions complete.
    Spec early;
    early.method = "POST";
    early.url = "/early";
    early.body = PatternBody(4 * 1024 * 1024);
    early.headers = {{"Host", "localhost"}, {"Content-Length", std::to_string(early.body.size())}};
    Result r4b;
    RunRequest(reg, mainApp, early, r4b);
    Check(r4b.response.status == 200 && r4b.response.body == std::string(256 * 1024, 'e'),
          "an early answer (before the 4 MiB upload ended) arrived whole");
    CheckCycle(r4b, "early answer");

    // 5. 20 MiB download: async WriteEntityChunks (+ Flush), acknowledged on completion.
    Spec down;
    down.url = "/bytes?n=" + std::to_string(big);
    down.headers = {{"Host", "localhost"}};
    Result r5;
    RunRequest(reg, mainApp, down, r5, 120000);
    Check(r5.response.status == 200 && r5.response.body.size() == big &&
              Fnv(r5.response.body) == Fnv(PatternBody(big)),
          "20 MiB download intact (length and hash), " + std::to_string(r5.elapsedMs) + " ms, " +
              std::to_string(r5.response.asyncWrites) + " async writes, " +
              std::to_string(r5.response.flushes) + " flushes");
    CheckCycle(r5, "download");

    // 6. The client disconnects mid-response: NotifyDisconnect cancels the request (writes
    // keep "succeeding" in the emulator, so nothing else could stop it).
    Spec slow;
    slow.url = "/slow?n=" + std::to_string(4 * 1024 * 1024);
    slow.headers = {{"Host", "localhost"}};
    slow.disconnectAfter = 64 * 1024;
    Result r6;
    RunRequest(reg, mainApp, slow, r6);
    Check(r6.disconnectNotified == 1, "IIS told the module's connection context (NotifyDisconnect)");
    Check(r6.status == RQ_NOTIFICATION_FINISH_REQUEST && r6.response.body.size() < 1024 * 1024 &&
              r6.elapsedMs < 4000,
          "client disconnect cancelled the response (" + std::to_string(r6.response.body.size()) +
              " of 4 MiB written, " + std::to_string(r6.elapsedMs) + " ms, FINISH_REQUEST)");
    Result r6b;
    RunRequest(reg, mainApp, echo, r6b);
    Check(r6b.response.status == 200 && PidOf(r6b) == p1.pid,
          "the app still serves after the disconnect, same process");

    // 6b. The backend breaks the response after its head: the client connection is reset,
    // never ended as if the body were complete.
    Spec trunc;
    trunc.url = "/truncate?n=200000";
    trunc.headers = {{"Host", "localhost"}};
    Result r6c;
    RunRequest(reg, mainApp, trunc, r6c);
    Check(r6c.status == RQ_NOTIFICATION_FINISH_REQUEST && r6c.response.reset &&
              r6c.response.needDisconnect && r6c.response.body.size() < 200000,
          "a response broken after its head resets the client connection (" +
              std::to_string(r6c.response.body.size()) + " of 200000 bytes)");

    DWORD busyPid = 0;
    // 6c. Eight concurrent first requests to a fresh application (uploads and downloads):
    // one app, one process, every body intact.
    {
        const int n = 8;
        std::vector<std::unique_ptr<Parallel>> jobs;
        std::vector<HANDLE> threads;
        for (int i = 0; i < n; ++i) {
            std::unique_ptr<Parallel> p(new Parallel());
            p->reg = &reg;
            p->app = &busyApp;
            if (i % 2 == 0) {
                p->spec.method = "PUT";
                p->spec.url = "/busy/put/" + std::to_string(i);
                p->spec.body = PatternBody(512 * 1024 + static_cast<size_t>(i));
                p->spec.headers = {{"Host", "localhost"},
                                   {"Content-Length", std::to_string(p->spec.body.size())}};
            } else {
                p->spec.url = "/bytes?n=" + std::to_string(1024 * 1024 + i);
                p->spec.headers = {{"Host", "localhost"}};
            }
            jobs.push_back(std::move(p));
        }
        for (auto &j : jobs) {
            HANDLE t = CreateThread(nullptr, 0, &ParallelThread, j.get(), 0, nullptr);
            if (t != nullptr) {
                threads.push_back(t);
            }
        }
        for (HANDLE t : threads) {
            WaitForSingleObject(t, INFINITE);
            CloseHandle(t);
        }
        bool allOk = threads.size() == static_cast<size_t>(n);
        DWORD pid = 0;
        bool onePid = true;
        for (int i = 0; i < n; ++i) {
            const Result &r = jobs[static_cast<size_t>(i)]->result;
            const Spec &sp = jobs[static_cast<size_t>(i)]->spec;
            bool ok = r.status == RQ_NOTIFICATION_CONTINUE && r.response.status == 200 &&
                      !r.overlappingIo;
            if (i % 2 == 0) {
                ok = ok && EchoField(r.response.body, "body-fnv") == Fnv(sp.body);
                DWORD p = PidOf(r);
                onePid = onePid && p != 0 && (pid == 0 || p == pid);
                pid = p;
            } else {
                ok = ok && Fnv(r.response.body) == Fnv(PatternBody(1024 * 1024 + static_cast<size_t>(i)));
            }
            allOk = allOk && ok;
        }
        Check(allOk, "8 concurrent requests (4 uploads, 4 downloads) to a fresh app, all intact");
        Check(onePid, "they shared one app and one process (pid " + std::to_string(pid) + ")");
        busyPid = pid;
    }

    // 6d. WebSockets (its own application: one case kills the backend).
    RunWebSocketTests(reg, wsApp);
    RunWebSocketStuckTeardownTests(reg, wsApp);

    RunRequestPathTests(reg, mainApp);

    // 7. Startup failure: the engine's 502.5 page.
    Result r7;
    RunRequest(reg, brokenApp, echo, r7);
    PrintResponse("startup failure", r7);
    Check(r7.response.status == 502 && r7.response.subStatus == 5,
          "startup failure gives 502.5 (SetStatus substatus)");
    Check(Contains(r7.response.body, "502.5") && Header(r7.response, "Content-Type").find("text/html") == 0,
          "with the engine's 502.5 page");
    CheckCycle(r7, "startup failure");

    // 8. app_offline.htm: 503 with its content.
    Result r8;
    RunRequest(reg, offlineApp, echo, r8);
    Check(r8.response.status == 503 && Contains(r8.response.body, "Down for maintenance (emulated)"),
          "app_offline.htm gives 503 with the file's content");

    // 9. Configuration errors: 500.19 with the engine's one-line message, read once.
    Result r9;
    RunRequest(reg, badApp, echo, r9);
    PrintResponse("configuration error", r9);
    Check(r9.response.status == 500 && r9.response.subStatus == 19 &&
              Contains(r9.response.body, "startupTimeLimit") && Contains(r9.response.body, "9999"),
          "invalid attribute (startupTimeLimit 9999) gives 500.19 naming it");
    Check(r9.status == RQ_NOTIFICATION_FINISH_REQUEST, "the configuration error finished the request");
    int reads = server.admin.sectionReads;
    Result r9b;
    RunRequest(reg, badApp, echo, r9b);
    Check(r9b.response.status == 500 && server.admin.sectionReads == reads,
          "the error is cached until the configuration changes");
    Result r9c;
    RunRequest(reg, badHandlerApp, echo, r9c);
    Check(r9c.response.status == 500 && Contains(r9c.response.body, "recycleAfterRequests"),
          "an invalid handlerSettings entry reached the engine (500.19 naming it)");

    Process busy(busyPid);

    // 10. Application stop: the backend stops (no orphan).
    AppStop stop(&mainApp);
    DWORD t0 = GetTickCount();
    Check(reg.global->OnGlobalApplicationStop(&stop) == GL_NOTIFICATION_CONTINUE,
          "OnGlobalApplicationStop returns CONTINUE");
    Check(p1.Exited(), "GL_APPLICATION_STOP stopped the backend process (pid " +
                           std::to_string(p1.pid) + ", " + std::to_string(GetTickCount() - t0) +
                           " ms)");

    // 11. The next request starts a new process; a configuration change stops it and the
    // new settings are read.
    Result r11;
    RunRequest(reg, mainApp, echo, r11);
    Process p2(PidOf(r11));
    Check(r11.response.status == 200 && p2.pid != 0 && p2.pid != p1.pid && p2.Running(),
          "after the stop, a request starts a new process");
    server.admin.sections[mainApp.configPath] = AspNetCoreSection(
        {{L"processPath", Str(L".\\backend.exe")}, {L"shutdownTimeLimit", Uint(5)}},
        {{L"EMU_GREETING", L"changed"}}, handlers);
    ConfigChange change;
    Check(reg.global->OnGlobalConfigurationChange(&change) == GL_NOTIFICATION_CONTINUE,
          "OnGlobalConfigurationChange returns CONTINUE");
    Check(p2.Exited(), "GL_CONFIGURATION_CHANGE stopped the app's process");
    Result r12;
    RunRequest(reg, mainApp, echo, r12);
    Process p3(PidOf(r12));
    Check(r12.response.status == 200 && Contains(r12.response.body, "env: EMU_GREETING=changed\n"),
          "after the change the new configuration is read");
    RunMachineConfigChangeTests(reg, mainApp, echo, r12);

    RunUserTokenAndHttpsPortTests(reg, server, backend);
    RunWebSocketModuleAbsentTests(reg, server, backend);
    RunWebSocketDrainTests(reg, server, backend);
    RunRecycleOnFileChangeTests(reg, server, backend);
    RunHttp2Tests(reg, server, backend);

    // 12. Stop listening (recycle) while requests keep arriving, then Terminate: every app
    // stops (lifecycle_emu.h).
    Check(p3.Running(), "the app still has its process before the stop");
    RunStopListeningTests(reg, server, backend, mainApp, echo);
    Check(p3.pid != 0 && p3.Exited() && busy.pid != 0 && busy.Exited(),
          "no backend outlived the stop (two apps)");
    Check(g_liveComObjects == 0, "every configuration COM object was released");

    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    std::fflush(stdout);
    return g_failed == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char **argv)
{
    // The emulator is a test: any C++ exception is a failure, reported, not a crash.
    InitializeCriticalSection(&g_checkLock);
    try {
        int rc = Main(argc, argv);
        // Exit without running DLL teardown while the engine's threads still run (as a worker
        // process ends).
        std::fflush(stdout);
        TerminateProcess(GetCurrentProcess(), static_cast<UINT>(rc));
        return rc;
    } catch (...) {
        std::printf("FAIL: uncaught exception\n%d passed, %d failed\n", g_passed, g_failed + 1);
        return 1;
    }
}
