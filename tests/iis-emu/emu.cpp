// The emulated IIS: plays IIS's side of the native-module contract against aspnetcore_rs.dll,
// under Wine (or on Windows).
//
//   iis-emu.exe <path to aspnetcore_rs.dll> <path to web.config>
//
// It loads the DLL, calls RegisterModule with its own IHttpModuleRegistrationInfo and
// IHttpServer (whose IAppHostAdminManager serves the <aspNetCore> attributes of the given
// web.config), then drives requests as IIS does: a fresh CHttpModule per request from the
// factory (placed in IModuleAllocator memory), OnExecuteRequestHandler on a "request thread",
// RQ_NOTIFICATION_PENDING honoured by delivering PostCompletion as OnAsyncCompletion on another
// thread, Dispose at the end. Global notifications (configuration change, application stop,
// stop listening) and Terminate follow.
//
// Every declared interface method is implemented: either with sensible behaviour or, for what
// the module has no business calling yet, a loud abort naming the method (UNEXPECTED), so a
// slot mix-up or a new dependency cannot pass unnoticed.
//
// Assumption (not stated by Microsoft's docs, and what IIS does in practice): a PostCompletion
// made before the notification returns PENDING is delivered only after it has returned.
//
// Output: "ok: …" / "FAIL: …" lines, the response received, then "N passed, M failed".

#include "iis/httpserv_min.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
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

void Check(bool ok, const std::string &what)
{
    std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
    std::fflush(stdout);
    (ok ? g_passed : g_failed)++;
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

// ---- A tiny web.config reader: the attributes of the first <aspNetCore> element ----

std::string DecodeXml(const std::string &s)
{
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '&') {
            out += s[i];
            continue;
        }
        size_t end = s.find(';', i);
        if (end == std::string::npos) {
            out += s[i];
            continue;
        }
        std::string ent = s.substr(i + 1, end - i - 1);
        unsigned long cp = 0;
        if (ent == "quot") cp = '"';
        else if (ent == "amp") cp = '&';
        else if (ent == "lt") cp = '<';
        else if (ent == "gt") cp = '>';
        else if (ent == "apos") cp = '\'';
        else if (!ent.empty() && ent[0] == '#') {
            cp = (ent.size() > 1 && (ent[1] == 'x' || ent[1] == 'X'))
                     ? std::strtoul(ent.c_str() + 2, nullptr, 16)
                     : std::strtoul(ent.c_str() + 1, nullptr, 10);
        }
        if (cp == 0) {
            out += s[i];
            continue;
        }
        // Encode as UTF-8.
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
        i = end;
    }
    return out;
}

bool ReadAspNetCoreAttributes(const char *path, std::map<std::wstring, std::wstring> &attrs)
{
    FILE *f = std::fopen(path, "rb");
    if (f == nullptr) {
        return false;
    }
    std::string xml;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        xml.append(buf, n);
    }
    std::fclose(f);
    size_t start = xml.find("<aspNetCore");
    if (start == std::string::npos) {
        return false;
    }
    size_t end = xml.find('>', start);
    std::string tag = xml.substr(start + 11, end - start - 11);
    size_t i = 0;
    while (i < tag.size()) {
        while (i < tag.size() && (tag[i] == ' ' || tag[i] == '\t' || tag[i] == '\r' ||
                                  tag[i] == '\n' || tag[i] == '/')) {
            ++i;
        }
        size_t eq = tag.find('=', i);
        if (eq == std::string::npos) {
            break;
        }
        std::string name = tag.substr(i, eq - i);
        char quote = tag[eq + 1];
        size_t close = tag.find(quote, eq + 2);
        if (close == std::string::npos) {
            return false;
        }
        attrs[Widen(name)] = Widen(DecodeXml(tag.substr(eq + 2, close - eq - 2)));
        i = close + 1;
    }
    return true;
}

// ---- Configuration: IAppHostAdminManager, IAppHostElement, IAppHostProperty ----

const wchar_t kAppConfigPath[] = L"MACHINE/WEBROOT/APPHOST/Default Web Site/app";

// Live COM objects handed to the module: must be back to zero at the end (no leaks).
LONG g_liveComObjects = 0;

class Property final : public IAppHostProperty {
public:
    Property(std::wstring name, std::wstring value) : name_(name), value_(value), refs_(1)
    {
        InterlockedIncrement(&g_liveComObjects);
    }
    HRESULT STDMETHODCALLTYPE QueryInterface(REFIID riid, void **ppv) override
    {
        if (IsEqualIID(riid, IID_IUnknown) || IsEqualIID(riid, IID_IAppHostProperty)) {
            *ppv = this;
            AddRef();
            return S_OK;
        }
        *ppv = nullptr;
        return E_NOINTERFACE;
    }
    ULONG STDMETHODCALLTYPE AddRef() override { return InterlockedIncrement(&refs_); }
    ULONG STDMETHODCALLTYPE Release() override
    {
        LONG r = InterlockedDecrement(&refs_);
        if (r == 0) {
            InterlockedDecrement(&g_liveComObjects);
            delete this;
        }
        return static_cast<ULONG>(r);
    }
    HRESULT STDMETHODCALLTYPE get_Name(BSTR *p) override
    {
        *p = SysAllocString(name_.c_str());
        return *p ? S_OK : E_OUTOFMEMORY;
    }
    HRESULT STDMETHODCALLTYPE get_Value(VARIANT *v) override
    {
        VariantInit(v);
        V_VT(v) = VT_BSTR;
        V_BSTR(v) = SysAllocStringLen(value_.data(), static_cast<UINT>(value_.size()));
        return V_BSTR(v) ? S_OK : E_OUTOFMEMORY;
    }
    HRESULT STDMETHODCALLTYPE put_Value(VARIANT) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE Clear() override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_StringValue(BSTR *p) override
    {
        *p = SysAllocStringLen(value_.data(), static_cast<UINT>(value_.size()));
        return *p ? S_OK : E_OUTOFMEMORY;
    }
    HRESULT STDMETHODCALLTYPE get_Exception(IAppHostPropertyException **) override
    {
        UNEXPECTED();
    }
    HRESULT STDMETHODCALLTYPE GetMetadata(BSTR, VARIANT *) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE SetMetadata(BSTR, VARIANT) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_Schema(IAppHostPropertySchema **) override { UNEXPECTED(); }

private:
    std::wstring name_;
    std::wstring value_;
    LONG refs_;
};

// The schema's attributes with their defaults (a subset of ANCM's aspnetcore_schema_v2.xml):
// IIS returns the default for a schema attribute that the config leaves out, and an error for
// a name the schema does not know.
const wchar_t *const kSchemaStrings[][2] = {
    {L"processPath", L""},        {L"arguments", L""},
    {L"stdoutLogEnabled", L"false"}, {L"stdoutLogFile", L".\\logs\\stdout"},
    {L"hostingModel", L""},       {L"startupTimeLimit", L"120"},
    {L"shutdownTimeLimit", L"10"}, {L"requestTimeout", L"00:02:00"},
};

class Section final : public IAppHostElement {
public:
    explicit Section(const std::map<std::wstring, std::wstring> &attrs) : attrs_(attrs), refs_(1)
    {
        InterlockedIncrement(&g_liveComObjects);
    }
    HRESULT STDMETHODCALLTYPE QueryInterface(REFIID riid, void **ppv) override
    {
        if (IsEqualIID(riid, IID_IUnknown) || IsEqualIID(riid, IID_IAppHostElement)) {
            *ppv = this;
            AddRef();
            return S_OK;
        }
        *ppv = nullptr;
        return E_NOINTERFACE;
    }
    ULONG STDMETHODCALLTYPE AddRef() override { return InterlockedIncrement(&refs_); }
    ULONG STDMETHODCALLTYPE Release() override
    {
        LONG r = InterlockedDecrement(&refs_);
        if (r == 0) {
            InterlockedDecrement(&g_liveComObjects);
            delete this;
        }
        return static_cast<ULONG>(r);
    }
    HRESULT STDMETHODCALLTYPE get_Name(BSTR *p) override
    {
        *p = SysAllocString(L"aspNetCore");
        return *p ? S_OK : E_OUTOFMEMORY;
    }
    HRESULT STDMETHODCALLTYPE get_Collection(IAppHostElementCollection **) override
    {
        UNEXPECTED();
    }
    HRESULT STDMETHODCALLTYPE get_Properties(IAppHostPropertyCollection **) override
    {
        UNEXPECTED();
    }
    HRESULT STDMETHODCALLTYPE get_ChildElements(IAppHostChildElementCollection **) override
    {
        UNEXPECTED();
    }
    HRESULT STDMETHODCALLTYPE GetMetadata(BSTR, VARIANT *) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE SetMetadata(BSTR, VARIANT) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_Schema(IAppHostElementSchema **) override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE GetElementByName(BSTR, IAppHostElement **) override
    {
        UNEXPECTED();
    }
    HRESULT STDMETHODCALLTYPE GetPropertyByName(BSTR name, IAppHostProperty **pp) override
    {
        *pp = nullptr;
        if (name == nullptr) {
            return E_INVALIDARG;
        }
        // Like IIS, the BSTR's length prefix is what counts.
        std::wstring key(name, SysStringLen(name));
        for (const auto &entry : kSchemaStrings) {
            if (key == entry[0]) {
                auto it = attrs_.find(key);
                *pp = new Property(key, it != attrs_.end() ? it->second : entry[1]);
                return S_OK;
            }
        }
        Check(false, "GetPropertyByName of an attribute not in the schema: " + Narrow(key));
        return HRESULT_FROM_WIN32(ERROR_INVALID_INDEX);
    }
    HRESULT STDMETHODCALLTYPE Clear() override { UNEXPECTED(); }
    HRESULT STDMETHODCALLTYPE get_Methods(IAppHostMethodCollection **) override { UNEXPECTED(); }

private:
    std::map<std::wstring, std::wstring> attrs_;
    LONG refs_;
};

class AdminManager final : public IAppHostAdminManager {
public:
    std::map<std::wstring, std::wstring> attrs;
    int sectionReads = 0;

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
        if (s != L"system.webServer/aspNetCore") {
            Check(false, "GetAdminSection of an unexpected section: " + Narrow(s));
            return HRESULT_FROM_WIN32(ERROR_INVALID_DATA);
        }
        if (p != kAppConfigPath) {
            Check(false, "GetAdminSection at an unexpected path: " + Narrow(p));
            return HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND);
        }
        ++sectionReads;
        *pp = new Section(attrs);
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

class Server final : public IHttpServer {
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
    // IHttpServer2 is not emulated yet: say so, as an old IIS would.
    HRESULT GetExtendedInterface(HTTP_SERVER_INTERFACE_VERSION, PVOID *pp) override
    {
        *pp = nullptr;
        return E_NOINTERFACE;
    }
};

int g_moduleIdTag = 0; // its address is the module id

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

class Application final : public IHttpApplication {
public:
    PCWSTR GetApplicationPhysicalPath() const override { return L"C:\\inetpub\\app\\"; }
    PCWSTR GetApplicationId() const override { return L"/LM/W3SVC/1/ROOT/app"; }
    PCWSTR GetAppConfigPath() const override { return kAppConfigPath; }
    IHttpModuleContextContainer *GetModuleContextContainer() override { UNEXPECTED(); }
};

class Request final : public IHttpRequest {
public:
    Request(const char *method, const char *rawUrl) : method_(method), rawUrl_(rawUrl)
    {
        ZeroMemory(&raw_, sizeof raw_);
        raw_.Version.MajorVersion = 1;
        raw_.Version.MinorVersion = 1;
        raw_.pRawUrl = rawUrl_.c_str();
        raw_.RawUrlLength = static_cast<USHORT>(rawUrl_.size());
    }
    const HTTP_REQUEST *GetRawHttpRequestConst() const override { return &raw_; }
    HTTP_REQUEST *GetRawHttpRequest() override { return &raw_; }
    PCSTR GetHeaderById(HTTP_HEADER_ID, USHORT *) const override { UNEXPECTED(); }
    PCSTR GetHeaderByName(PCSTR, USHORT *) const override { UNEXPECTED(); }
    HRESULT SetHeaderById(HTTP_HEADER_ID, PCSTR, USHORT, BOOL) override { UNEXPECTED(); }
    HRESULT SetHeaderByName(PCSTR, PCSTR, USHORT, BOOL) override { UNEXPECTED(); }
    HRESULT DeleteHeaderById(HTTP_HEADER_ID) override { UNEXPECTED(); }
    HRESULT DeleteHeaderByName(PCSTR) override { UNEXPECTED(); }
    PCSTR GetHttpMethod() const override { return method_.c_str(); }
    HRESULT SetHttpMethod(PCSTR) override { UNEXPECTED(); }
    HRESULT SetUrlA(PCSTR, DWORD, BOOL) override { UNEXPECTED(); }
    HRESULT SetUrlW(PCWSTR, DWORD, BOOL) override { UNEXPECTED(); }
    BOOL GetUrlChanged() const override { return FALSE; }
    PCWSTR GetForwardedUrl() const override { UNEXPECTED(); }
    PSOCKADDR GetLocalAddress() const override { UNEXPECTED(); }
    PSOCKADDR GetRemoteAddress() const override { UNEXPECTED(); }
    HRESULT ReadEntityBody(VOID *, DWORD, BOOL, DWORD *, BOOL *) override { UNEXPECTED(); }
    HRESULT InsertEntityBody(VOID *, DWORD) override { UNEXPECTED(); }
    DWORD GetRemainingEntityBytes() override { return 0; }
    VOID GetHttpVersion(USHORT *major, USHORT *minor) const override
    {
        *major = 1;
        *minor = 1;
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

private:
    std::string method_;
    std::string rawUrl_;
    HTTP_REQUEST raw_;
};

class Response final : public IHttpResponse {
public:
    USHORT status = 0;
    USHORT subStatus = 0;
    std::string reason;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    bool headersSent = false;

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
        std::string v(value, cch);
        if (replace) {
            for (auto &h : headers) {
                if (_stricmp(h.first.c_str(), name) == 0) {
                    h.second = v;
                    return S_OK;
                }
            }
        }
        headers.emplace_back(name, v);
        return S_OK;
    }
    HRESULT DeleteHeaderById(HTTP_HEADER_ID) override { UNEXPECTED(); }
    HRESULT DeleteHeaderByName(PCSTR) override { UNEXPECTED(); }
    PCSTR GetHeaderById(HTTP_HEADER_ID, USHORT *) const override { UNEXPECTED(); }
    PCSTR GetHeaderByName(PCSTR, USHORT *) const override { UNEXPECTED(); }
    VOID Clear() override { UNEXPECTED(); }
    VOID ClearHeaders() override { UNEXPECTED(); }
    VOID SetNeedDisconnect() override { UNEXPECTED(); }
    VOID ResetConnection() override { UNEXPECTED(); }
    VOID DisableKernelCache(ULONG) override {}
    BOOL GetKernelCacheEnabled() const override { return FALSE; }
    VOID SuppressHeaders() override { UNEXPECTED(); }
    BOOL GetHeadersSuppressed() const override { return FALSE; }
    HRESULT Flush(BOOL fAsync, BOOL, DWORD *sent, BOOL *completionExpected) override
    {
        if (fAsync) {
            UNEXPECTED(); // not emulated yet
        }
        headersSent = true;
        if (sent != nullptr) {
            *sent = 0;
        }
        if (completionExpected != nullptr) {
            *completionExpected = FALSE;
        }
        return S_OK;
    }
    HRESULT Redirect(PCSTR, BOOL, BOOL) override { UNEXPECTED(); }
    HRESULT WriteEntityChunkByReference(HTTP_DATA_CHUNK *, LONG) override { UNEXPECTED(); }
    HRESULT WriteEntityChunks(HTTP_DATA_CHUNK *chunks, DWORD n, BOOL fAsync, BOOL,
                              DWORD *sent, BOOL *completionExpected) override
    {
        if (fAsync) {
            UNEXPECTED(); // not emulated yet
        }
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
        if (sent != nullptr) {
            *sent = total;
        }
        if (completionExpected != nullptr) {
            *completionExpected = FALSE;
        }
        return S_OK;
    }
    VOID DisableBuffering() override {}
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
};

// The request context. Completion plumbing: PostCompletion queues a completion; the
// completion thread delivers it as OnAsyncCompletion once the current notification has
// returned PENDING, and keeps doing so until a call returns something other than PENDING.
class Context final : public IHttpContext {
public:
    Context(Application *app, Request *req, Response *resp)
        : app_(app), req_(req), resp_(resp)
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

    // Runs the notification on this thread, then, if PENDING, waits for the completions.
    REQUEST_NOTIFICATION_STATUS Run()
    {
        requestThread = GetCurrentThreadId();
        REQUEST_NOTIFICATION_STATUS st = module->OnExecuteRequestHandler(this, &provider);
        EnterCriticalSection(&lock_);
        if (st != RQ_NOTIFICATION_PENDING) {
            bool stray = !posted_.empty();
            done_ = true;
            LeaveCriticalSection(&lock_);
            Check(!stray, "no PostCompletion left over when the handler did not pend");
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
        DWORD deadline = GetTickCount() + 10000;
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
        Check(finished, "the module finished the pending request (PostCompletion within 10 s)");
        return finished ? st : RQ_NOTIFICATION_FINISH_REQUEST;
    }

    IHttpSite *GetSite() override { UNEXPECTED(); }
    IHttpApplication *GetApplication() override { return app_; }
    IHttpConnection *GetConnection() override { UNEXPECTED(); }
    IHttpRequest *GetRequest() override { return req_; }
    IHttpResponse *GetResponse() override { return resp_; }
    BOOL GetResponseHeadersSent() const override { return resp_->headersSent; }
    IHttpUser *GetUser() const override { UNEXPECTED(); }
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
        posted_.push_back(cbBytes);
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
    HRESULT GetServerVariableA(PCSTR, PCSTR *, DWORD *) override { UNEXPECTED(); }
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
    HRESULT CancelIo() override { UNEXPECTED(); }
    HRESULT MapHandler(DWORD, PCWSTR, PCWSTR, PCSTR, IScriptMapInfo **, BOOL) override
    {
        UNEXPECTED();
    }
    HRESULT GetExtendedInterface(HTTP_CONTEXT_INTERFACE_VERSION, PVOID *pp) override
    {
        *pp = nullptr;
        return E_NOINTERFACE;
    }

private:
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
            DWORD bytes = self->posted_.front();
            self->posted_.erase(self->posted_.begin());
            self->pending_ = false;
            LeaveCriticalSection(&self->lock_);
            CompletionInfo info;
            info.bytes = bytes;
            REQUEST_NOTIFICATION_STATUS st = self->module->OnAsyncCompletion(
                self, RQ_EXECUTE_REQUEST_HANDLER, FALSE, &self->provider, &info);
            EnterCriticalSection(&self->lock_);
            ++self->completionsDelivered;
            if (st != RQ_NOTIFICATION_PENDING) {
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
    Request *req_;
    Response *resp_;
    CRITICAL_SECTION lock_;
    CONDITION_VARIABLE changed_;
    std::vector<DWORD> posted_;
    bool pending_ = false;
    bool done_ = false;
    bool stop_ = false;
    REQUEST_NOTIFICATION_STATUS final_ = RQ_NOTIFICATION_CONTINUE;
};

struct Result {
    REQUEST_NOTIFICATION_STATUS status;
    Response response;
    bool otherThread;
    int completions;
};

// One request through the module, as IIS's pipeline would run RQ_EXECUTE_REQUEST_HANDLER.
bool RunRequest(Registration &reg, const char *method, const char *url, Result &out)
{
    Allocator allocator;
    CHttpModule *module = nullptr;
    HRESULT hr = reg.factory->GetHttpModule(&module, &allocator);
    if (FAILED(hr) || module == nullptr) {
        Check(false, "factory GetHttpModule");
        return false;
    }
    Application app;
    Request req(method, url);
    Context ctx(&app, &req, &out.response);
    ctx.module = module;
    out.status = ctx.Run();
    out.otherThread = ctx.completionThread != 0 && ctx.completionThread != ctx.requestThread;
    out.completions = ctx.completionsDelivered;
    module->Dispose();
    return true;
}

void PrintResponse(const Result &r)
{
    std::printf("--- response (notification status %d) ---\n", static_cast<int>(r.status));
    std::printf("HTTP/1.1 %u.%u %s\n", r.response.status, r.response.subStatus,
                r.response.reason.c_str());
    for (const auto &h : r.response.headers) {
        std::printf("%s: %s\n", h.first.c_str(), h.second.c_str());
    }
    std::printf("\n%s--- end of response ---\n", r.response.body.c_str());
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

bool Contains(const std::string &hay, const std::string &needle)
{
    return hay.find(needle) != std::string::npos;
}

class ConfigChange final : public IGlobalConfigurationChangeProvider {
public:
    VOID SetErrorStatus(HRESULT) override {}
    PCWSTR GetChangePath() const override { return L"MACHINE/WEBROOT/APPHOST/Default Web Site"; }
};

class StopListening final : public IGlobalStopListeningProvider {
public:
    VOID SetErrorStatus(HRESULT) override {}
    BOOL DrainRequestsGracefully() const override { return TRUE; }
};

class AppProvider final : public IHttpApplicationProvider {
public:
    Application app;
    VOID SetErrorStatus(HRESULT) override {}
    IHttpApplication *GetApplication() override { return &app; }
};

int Main(int argc, char **argv)
{
    if (argc != 3) {
        std::fprintf(stderr, "usage: iis-emu <aspnetcore_rs.dll> <web.config>\n");
        return 2;
    }
    Server server;
    if (!ReadAspNetCoreAttributes(argv[2], server.admin.attrs)) {
        std::fprintf(stderr, "cannot read <aspNetCore> from %s\n", argv[2]);
        return 2;
    }
    const std::string expectedProcessPath = Narrow(server.admin.attrs[L"processPath"]);
    const std::string expectedArguments = Narrow(server.admin.attrs[L"arguments"]);

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

    // Request 1.
    Result r1{};
    if (RunRequest(reg, "GET", "/app/hello%2Fworld?x=1", r1)) {
        PrintResponse(r1);
        Check(r1.response.status == 200 && r1.response.subStatus == 0, "status 200");
        Check(Header(r1.response, "Content-Type") == "text/plain; charset=utf-8",
              "Content-Type: text/plain; charset=utf-8");
        Check(Contains(Header(r1.response, "X-Ancm-Rs"), "placeholder"),
              "X-Ancm-Rs header marks the placeholder");
        Check(Contains(r1.response.body, "processPath: " + expectedProcessPath + "\n"),
              "processPath from web.config came back: " + expectedProcessPath);
        Check(Contains(r1.response.body, "arguments: " + expectedArguments + "\n"),
              "arguments from web.config came back (UTF-8, entities decoded)");
        Check(Contains(r1.response.body, "raw-url: /app/hello%2Fworld?x=1\n"),
              "the raw URL (with %2F) reached the module");
        Check(r1.completions == 1 && r1.otherThread,
              "PENDING → PostCompletion → OnAsyncCompletion on another thread");
        Check(r1.status == RQ_NOTIFICATION_CONTINUE, "the request ended with CONTINUE");
    }
    Check(g_liveComObjects == 0, "every configuration COM object was released");

    // Request 2: settings are cached, so a changed web.config is not seen ...
    server.admin.attrs[L"processPath"] = L".\\changed.exe";
    int readsBefore = server.admin.sectionReads;
    Result r2{};
    if (RunRequest(reg, "GET", "/app/", r2)) {
        Check(server.admin.sectionReads == readsBefore &&
                  Contains(r2.response.body, "processPath: " + expectedProcessPath + "\n"),
              "second request served from the settings cache");
    }
    // ... until IIS reports the change.
    ConfigChange change;
    Check(reg.global->OnGlobalConfigurationChange(&change) == GL_NOTIFICATION_CONTINUE,
          "OnGlobalConfigurationChange returns CONTINUE");
    Result r3{};
    if (RunRequest(reg, "GET", "/app/", r3)) {
        Check(Contains(r3.response.body, "processPath: .\\changed.exe\n"),
              "after GL_CONFIGURATION_CHANGE the new processPath is read");
    }
    AppProvider stop;
    Check(reg.global->OnGlobalApplicationStop(&stop) == GL_NOTIFICATION_CONTINUE,
          "OnGlobalApplicationStop returns CONTINUE");
    StopListening stopListening;
    Check(reg.global->OnGlobalStopListening(&stopListening) == GL_NOTIFICATION_CONTINUE,
          "OnGlobalStopListening returns CONTINUE");
    Check(g_liveComObjects == 0, "no configuration COM object leaked");

    // Shutdown, as IIS does it.
    reg.global->Terminate();
    reg.factory->Terminate();
    Check(FreeLibrary(dll) != 0, "FreeLibrary");

    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char **argv)
{
    // The emulator is a test: any C++ exception is a failure, reported, not a crash.
    try {
        return Main(argc, argv);
    } catch (...) {
        std::printf("FAIL: uncaught exception\n%d passed, %d failed\n", g_passed, g_failed + 1);
        return 1;
    }
}
