// IIS native-module ABI: basic types, constants, IIDs and forward declarations.
//
// Clean-room declaration written from public facts (slot numbers and signatures as documented
// by Microsoft Learn, TerraFX.Interop.Windows' [VtblIndex] bindings and dotnet/aspnetcore's
// MIT-licensed httpserv_xp.h); no Microsoft header text is copied. mingw-w64 ships no
// httpserv.h / iiswebsocket.h / ahadmin.h, so the project declares the subset it uses.
//
// Rules for every file under iis/ (from the project's IIS ABI reference, iis-abi.md):
// - Virtual methods are declared in Microsoft's MSVC vtable order.
// - No overloaded virtual methods. MSVC groups overloads at the position of the first one in
//   reverse declaration order; g++ keeps declaration order. So each Microsoft overload gets a
//   distinct name here, placed at its MSVC slot, and the comment names the Microsoft method.
// - No virtual destructor except CHttpModule's protected one, declared last.
// - Calling conventions as Microsoft declares them: the httpserv.h interfaces use the default
//   member convention (thiscall on x86; adding __stdcall there would be wrong on x86), COM
//   interfaces use STDMETHODCALLTYPE, entry points and callbacks use WINAPI. On x64 they are all
//   the same convention.
// - No default arguments (they are not part of the ABI; callers pass every argument).
// - Only types from the mingw-w64 / Windows SDK headers; no __uuidof, no compiler-only syntax.
// - Do not include this together with the Windows SDK's own httpserv.h or ahadmin.h.
#pragma once

#include <winsock2.h>
#include <windows.h>
#include <http.h>
#include <unknwn.h>
#include <oaidl.h>

#if !defined(_WIN32_WINNT) || _WIN32_WINNT < 0x0600
#error "iis/ needs _WIN32_WINNT >= 0x0600 so that HTTP_REQUEST is HTTP_REQUEST_V2"
#endif

// ---- Module identifier and notification results ----

typedef VOID *HTTP_MODULE_ID;

enum REQUEST_NOTIFICATION_STATUS {
    RQ_NOTIFICATION_CONTINUE = 0,
    RQ_NOTIFICATION_PENDING = 1,
    RQ_NOTIFICATION_FINISH_REQUEST = 2
};

enum GLOBAL_NOTIFICATION_STATUS {
    GL_NOTIFICATION_CONTINUE = 0,
    GL_NOTIFICATION_HANDLED = 1
};

enum CACHE_OPERATION {
    CACHE_OPERATION_RETRIEVE,
    CACHE_OPERATION_ADD,
    CACHE_OPERATION_DELETE,
    CACHE_OPERATION_FLUSH_PREFIX,
    CACHE_OPERATION_ENUM
};

// IHttpServer::GetExtendedInterface versions.
enum HTTP_SERVER_INTERFACE_VERSION {
    HTTP_SERVER_INTERFACE_V2 = 0
};

// IHttpContext::GetExtendedInterface versions (deprecated by Microsoft; no values defined).
enum HTTP_CONTEXT_INTERFACE_VERSION {
    HTTP_CONTEXT_INTERFACE_VERSION_NONE_ = 0
};

// ---- Request notifications (IHttpModuleRegistrationInfo::SetRequestNotifications) ----

#define RQ_BEGIN_REQUEST 0x00000001
#define RQ_AUTHENTICATE_REQUEST 0x00000002
#define RQ_AUTHORIZE_REQUEST 0x00000004
#define RQ_RESOLVE_REQUEST_CACHE 0x00000008
#define RQ_MAP_REQUEST_HANDLER 0x00000010
#define RQ_ACQUIRE_REQUEST_STATE 0x00000020
#define RQ_PRE_EXECUTE_REQUEST_HANDLER 0x00000040
#define RQ_EXECUTE_REQUEST_HANDLER 0x00000080
#define RQ_RELEASE_REQUEST_STATE 0x00000100
#define RQ_UPDATE_REQUEST_CACHE 0x00000200
#define RQ_LOG_REQUEST 0x00000400
#define RQ_END_REQUEST 0x00000800
#define RQ_SEND_RESPONSE_STATUS_AND_HEADERS 0x08000000
#define RQ_CUSTOM_NOTIFICATION 0x10000000
#define RQ_SEND_RESPONSE 0x20000000
#define RQ_READ_ENTITY 0x40000000
#define RQ_MAP_PATH 0x80000000

// ---- Global notifications (IHttpModuleRegistrationInfo::SetGlobalNotifications) ----

#define GL_STOP_LISTENING 0x00000002
#define GL_CACHE_CLEANUP 0x00000004
#define GL_CACHE_OPERATION 0x00000010
#define GL_HEALTH_CHECK 0x00000020
#define GL_CONFIGURATION_CHANGE 0x00000040
#define GL_FILE_CHANGE 0x00000080
#define GL_PRE_BEGIN_REQUEST 0x00000100
#define GL_APPLICATION_START 0x00000200
#define GL_APPLICATION_RESOLVE_MODULES 0x00000400
#define GL_APPLICATION_STOP 0x00000800
#define GL_RSCA_QUERY 0x00001000
#define GL_TRACE_EVENT 0x00002000
#define GL_CUSTOM_NOTIFICATION 0x00004000
#define GL_THREAD_CLEANUP 0x00008000
#define GL_APPLICATION_PRELOAD 0x00010000
#define GL_SUSPEND_PROCESS 0x00020000

// ---- Forward declarations (httpserv.h interfaces are plain C++ classes, not COM) ----

class CHttpModule;
class CGlobalModule;
class IModuleAllocator;
class IHttpModuleFactory;
class IHttpModuleRegistrationInfo;
class IHttpServer;
class IHttpServer2;
class IHttpContext;
class IHttpContext2;
class IHttpContext3;
class IHttpSite;
class IHttpApplication;
class IHttpConnection;
class IHttpUser;
class IHttpRequest;
class IHttpRequest2;
class IHttpResponse;
class IHttpStoredContext;
class IHttpConnectionStoredContext;
class IHttpModuleContextContainer;
class IHttpConnectionModuleContextContainer;
class IDispensedHttpModuleContextContainer;
class INamedContextContainer;
class IHttpEventProvider;
class IHttpCompletionInfo;
class IAuthenticationProvider;
class IMapHandlerProvider;
class ISendResponseProvider;
class IMapPathProvider;
class IReadEntityProvider;
class ICustomNotificationProvider;
class IGlobalStopListeningProvider;
class ICacheProvider;
class IGlobalConfigurationChangeProvider;
class IGlobalFileChangeProvider;
class IPreBeginRequestProvider;
class IHttpApplicationProvider;
typedef IHttpApplicationProvider IHttpApplicationStartProvider;
typedef IHttpApplicationProvider IHttpApplicationStopProvider;
class IHttpApplicationResolveModulesProvider;
class IGlobalRSCAQueryProvider;
class IGlobalTraceEventProvider;
class IGlobalThreadCleanupProvider;
class IGlobalApplicationPreloadProvider;
class IGlobalSuspendProcessCallback;
class IHttpUrlInfo;
class IMetadataInfo;
class IReferencedMetadataInfo;
class IScriptMapInfo;
class IHttpFileInfo;
class IHttpTraceContext;
class IHttpCachePolicy;
class IHttpCacheKey;
class IHttpCacheSpecificData;
class IHttpPerfCounterInfo;
class IHttpFileMonitor;
class IHttpTokenEntry;
class IWpfSettings;
class IWorkerProcessFramework;
class IWebSocketContext;

// ahadmin.h (COM, derive from IUnknown).
class IAppHostAdminManager;
class IAppHostElement;
class IAppHostProperty;
class IAppHostPropertyCollection;
class IAppHostElementCollection;
class IAppHostChildElementCollection;
class IAppHostConfigException;
class IAppHostConfigManager;
class IAppHostElementSchema;
class IAppHostMethodCollection;
class IAppHostPropertyException;
class IAppHostPropertySchema;
class IAppHostCollectionSchema;

// ---- Interface identifiers (explicit constants: __uuidof is MSVC-only) ----
// For IHttpServer2::GetExtendedInterface(IID_IHttpContext, ctx, IID_IHttpContext3, &ctx3).

// 424c1b8c-a1ba-44d7-ac98-9f8f457701a5
static const IID IID_IHttpContext = {
    0x424c1b8c, 0xa1ba, 0x44d7, {0xac, 0x98, 0x9f, 0x8f, 0x45, 0x77, 0x01, 0xa5}};
// bf53c022-ca4b-4349-a38e-a4b78ad897fb
static const IID IID_IHttpContext3 = {
    0xbf53c022, 0xca4b, 0x4349, {0xa3, 0x8e, 0xa4, 0xb7, 0x8a, 0xd8, 0x97, 0xfb}};
// 0822c871-f14e-4974-a1e6-5b3c1f09b76a
static const IID IID_IHttpResponse2 = {
    0x0822c871, 0xf14e, 0x4974, {0xa1, 0xe6, 0x5b, 0x3c, 0x1f, 0x09, 0xb7, 0x6a}};
// 7e1c6b38-628f-4e6c-95dc-41237eb7f95e
static const IID IID_IHttpResponse = {
    0x7e1c6b38, 0x628f, 0x4e6c, {0x95, 0xdc, 0x41, 0x23, 0x7e, 0xb7, 0xf9, 0x5e}};
// 1a2acc57-cae2-4f28-b4ab-00c8f96b12ec
static const IID IID_IHttpResponse4 = {
    0x1a2acc57, 0xcae2, 0x4f28, {0xb4, 0xab, 0x00, 0xc8, 0xf9, 0x6b, 0x12, 0xec}};
// 34af637e-afe8-4556-bcc1-767f8e0b4a4e
static const IID IID_IHttpServer2 = {
    0x34af637e, 0xafe8, 0x4556, {0xbc, 0xc1, 0x76, 0x7f, 0x8e, 0x0b, 0x4a, 0x4e}};

// ahadmin.h COM interfaces (for QueryInterface).
// 9be77978-73ed-4a9a-87fd-13f09fec1b13
static const IID IID_IAppHostAdminManager = {
    0x9be77978, 0x73ed, 0x4a9a, {0x87, 0xfd, 0x13, 0xf0, 0x9f, 0xec, 0x1b, 0x13}};
// 64ff8ccc-b287-4dae-b08a-a72cbf45f453
static const IID IID_IAppHostElement = {
    0x64ff8ccc, 0xb287, 0x4dae, {0xb0, 0x8a, 0xa7, 0x2c, 0xbf, 0x45, 0xf4, 0x53}};
// ed35f7a1-5024-4e7b-a44d-07ddaf4b524d
static const IID IID_IAppHostProperty = {
    0xed35f7a1, 0x5024, 0x4e7b, {0xa4, 0x4d, 0x07, 0xdd, 0xaf, 0x4b, 0x52, 0x4d}};
// 0191775e-bcff-445a-b4f4-3bdda54e2816
static const IID IID_IAppHostPropertyCollection = {
    0x0191775e, 0xbcff, 0x445a, {0xb4, 0xf4, 0x3b, 0xdd, 0xa5, 0x4e, 0x28, 0x16}};
// c8550bff-5281-4b1e-ac34-99b6fa38464d
static const IID IID_IAppHostElementCollection = {
    0xc8550bff, 0x5281, 0x4b1e, {0xac, 0x34, 0x99, 0xb6, 0xfa, 0x38, 0x46, 0x4d}};
// 08a90f5f-0702-48d6-b45f-02a9885a9768
static const IID IID_IAppHostChildElementCollection = {
    0x08a90f5f, 0x0702, 0x48d6, {0xb4, 0x5f, 0x02, 0xa9, 0x88, 0x5a, 0x97, 0x68}};

// ---- Module entry point ----
// Exported undecorated as "RegisterModule" (use a .def file: on x86 WINAPI would decorate it
// as _RegisterModule@12).
typedef HRESULT(WINAPI *PFN_REGISTERMODULE)(DWORD dwServerVersion,
                                            IHttpModuleRegistrationInfo *pModuleInfo,
                                            IHttpServer *pGlobalInfo);
#define MODULE_REGISTERMODULE "RegisterModule"
