// Checks that every virtual method declared under iis-glue/src/iis/ sits at Microsoft's (MSVC)
// vtable slot, as listed in the project's IIS ABI reference (iis-abi.md) and, for the few
// interfaces it does not list, in TerraFX.Interop.Windows' [VtblIndex] numbers (noted below).
//
// Build with mingw g++ (Itanium C++ ABI) and run under Wine or Windows:
//   x86_64-w64-mingw32-g++ -std=c++17 -Wall -Wextra -Werror -Iiis-glue/src -static
//       iis-glue/tests/vtable_slots.cpp -o vtable_slots.exe
// (or `cargo xtask iis-slots`, which does exactly that and runs it under Wine).
//
// How: in the Itanium ABI a pointer to a virtual member function is two words, the first being
// 1 + the byte offset of the method's vtable entry (the second the this-adjustment, 0 here).
// Taking &Class::Method also fails to compile if Method is overloaded, which enforces the
// headers' no-overload rule for every method in the table. A probe class adding one virtual
// method to each interface measures the vtable's length, so a method declared in a header but
// missing from the table (which would shift every later slot) is caught too.
//
// Output: one line per mismatch, a line for the other checks, then "N passed, M failed" where N
// counts method slots; exit status 1 when anything failed.
#include "iis/httpserv_min.h"

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <type_traits>

// ---- Compile-time facts: sizes and constants ----

static_assert(sizeof(void *) == 8, "this test checks the x64 layout");
static_assert(sizeof(HTTP_DATA_CHUNK) == 32, "HTTP_DATA_CHUNK is 32 bytes on x64");
static_assert(sizeof(HTTP_MODULE_ID) == sizeof(void *), "HTTP_MODULE_ID is a pointer");
static_assert(RQ_NOTIFICATION_CONTINUE == 0 && RQ_NOTIFICATION_PENDING == 1 &&
                  RQ_NOTIFICATION_FINISH_REQUEST == 2,
              "REQUEST_NOTIFICATION_STATUS");
static_assert(GL_NOTIFICATION_CONTINUE == 0 && GL_NOTIFICATION_HANDLED == 1,
              "GLOBAL_NOTIFICATION_STATUS");
static_assert(HTTP_SERVER_INTERFACE_V2 == 0, "HTTP_SERVER_INTERFACE_V2");
static_assert(sizeof(REQUEST_NOTIFICATION_STATUS) == 4 && sizeof(GLOBAL_NOTIFICATION_STATUS) == 4,
              "notification status enums are int-sized, as with MSVC");

static_assert(RQ_BEGIN_REQUEST == 0x1, "RQ_BEGIN_REQUEST");
static_assert(RQ_AUTHENTICATE_REQUEST == 0x2, "RQ_AUTHENTICATE_REQUEST");
static_assert(RQ_AUTHORIZE_REQUEST == 0x4, "RQ_AUTHORIZE_REQUEST");
static_assert(RQ_RESOLVE_REQUEST_CACHE == 0x8, "RQ_RESOLVE_REQUEST_CACHE");
static_assert(RQ_MAP_REQUEST_HANDLER == 0x10, "RQ_MAP_REQUEST_HANDLER");
static_assert(RQ_ACQUIRE_REQUEST_STATE == 0x20, "RQ_ACQUIRE_REQUEST_STATE");
static_assert(RQ_PRE_EXECUTE_REQUEST_HANDLER == 0x40, "RQ_PRE_EXECUTE_REQUEST_HANDLER");
static_assert(RQ_EXECUTE_REQUEST_HANDLER == 0x80, "RQ_EXECUTE_REQUEST_HANDLER");
static_assert(RQ_RELEASE_REQUEST_STATE == 0x100, "RQ_RELEASE_REQUEST_STATE");
static_assert(RQ_UPDATE_REQUEST_CACHE == 0x200, "RQ_UPDATE_REQUEST_CACHE");
static_assert(RQ_LOG_REQUEST == 0x400, "RQ_LOG_REQUEST");
static_assert(RQ_END_REQUEST == 0x800, "RQ_END_REQUEST");
static_assert(RQ_SEND_RESPONSE_STATUS_AND_HEADERS == 0x08000000,
              "RQ_SEND_RESPONSE_STATUS_AND_HEADERS");
static_assert(RQ_CUSTOM_NOTIFICATION == 0x10000000, "RQ_CUSTOM_NOTIFICATION");
static_assert(RQ_SEND_RESPONSE == 0x20000000, "RQ_SEND_RESPONSE");
static_assert(RQ_READ_ENTITY == 0x40000000, "RQ_READ_ENTITY");
static_assert(RQ_MAP_PATH == 0x80000000u, "RQ_MAP_PATH");

static_assert(GL_STOP_LISTENING == 0x2, "GL_STOP_LISTENING");
static_assert(GL_CACHE_CLEANUP == 0x4, "GL_CACHE_CLEANUP");
static_assert(GL_CACHE_OPERATION == 0x10, "GL_CACHE_OPERATION");
static_assert(GL_HEALTH_CHECK == 0x20, "GL_HEALTH_CHECK");
static_assert(GL_CONFIGURATION_CHANGE == 0x40, "GL_CONFIGURATION_CHANGE");
static_assert(GL_FILE_CHANGE == 0x80, "GL_FILE_CHANGE");
static_assert(GL_PRE_BEGIN_REQUEST == 0x100, "GL_PRE_BEGIN_REQUEST");
static_assert(GL_APPLICATION_START == 0x200, "GL_APPLICATION_START");
static_assert(GL_APPLICATION_RESOLVE_MODULES == 0x400, "GL_APPLICATION_RESOLVE_MODULES");
static_assert(GL_APPLICATION_STOP == 0x800, "GL_APPLICATION_STOP");
static_assert(GL_RSCA_QUERY == 0x1000, "GL_RSCA_QUERY");
static_assert(GL_TRACE_EVENT == 0x2000, "GL_TRACE_EVENT");
static_assert(GL_CUSTOM_NOTIFICATION == 0x4000, "GL_CUSTOM_NOTIFICATION");
static_assert(GL_THREAD_CLEANUP == 0x8000, "GL_THREAD_CLEANUP");
static_assert(GL_APPLICATION_PRELOAD == 0x10000, "GL_APPLICATION_PRELOAD");
static_assert(GL_SUSPEND_PROCESS == 0x20000, "GL_SUSPEND_PROCESS");

// ---- Compile-time facts: destructors ----
// Only CHttpModule has a virtual destructor; any other would add vtable entries.

static_assert(std::has_virtual_destructor<CHttpModule>::value, "CHttpModule has one");
#define NO_VIRTUAL_DTOR(C) \
    static_assert(!std::has_virtual_destructor<C>::value, #C " must not have a virtual destructor")
NO_VIRTUAL_DTOR(CGlobalModule);
NO_VIRTUAL_DTOR(IModuleAllocator);
NO_VIRTUAL_DTOR(IHttpModuleFactory);
NO_VIRTUAL_DTOR(IHttpModuleRegistrationInfo);
NO_VIRTUAL_DTOR(IHttpServer2);
NO_VIRTUAL_DTOR(IHttpContext3);
NO_VIRTUAL_DTOR(IHttpSite);
NO_VIRTUAL_DTOR(IHttpApplication);
NO_VIRTUAL_DTOR(IHttpConnection);
NO_VIRTUAL_DTOR(IHttpUser);
NO_VIRTUAL_DTOR(IHttpRequest2);
NO_VIRTUAL_DTOR(IHttpResponse);
NO_VIRTUAL_DTOR(IHttpResponse4);
NO_VIRTUAL_DTOR(IHttpConnectionStoredContext);
NO_VIRTUAL_DTOR(IHttpConnectionModuleContextContainer);
NO_VIRTUAL_DTOR(INamedContextContainer);
NO_VIRTUAL_DTOR(IHttpEventProvider);
NO_VIRTUAL_DTOR(IHttpCompletionInfo);
NO_VIRTUAL_DTOR(IGlobalStopListeningProvider);
NO_VIRTUAL_DTOR(IGlobalConfigurationChangeProvider);
NO_VIRTUAL_DTOR(IHttpApplicationProvider);
NO_VIRTUAL_DTOR(IWebSocketContext);
NO_VIRTUAL_DTOR(IAppHostAdminManager);
NO_VIRTUAL_DTOR(IAppHostElement);
NO_VIRTUAL_DTOR(IAppHostProperty);
NO_VIRTUAL_DTOR(IAppHostPropertyCollection);
NO_VIRTUAL_DTOR(IAppHostElementCollection);
NO_VIRTUAL_DTOR(IAppHostChildElementCollection);

namespace {

int g_passed = 0;
int g_failed = 0;
int g_other_passed = 0;
int g_other_failed = 0;

// The vtable slot of a pointer to a virtual member function (Itanium ABI), or -1 when it does
// not point to a virtual function, or -2 when it carries a this-adjustment.
template <typename Pmf> long slot_of(Pmf pmf)
{
    static_assert(sizeof(Pmf) == 2 * sizeof(std::ptrdiff_t), "Itanium PMF is two words");
    std::ptrdiff_t words[2];
    std::memcpy(words, &pmf, sizeof words);
    if ((words[0] & 1) == 0) {
        return -1;
    }
    if (words[1] != 0) {
        return -2;
    }
    return static_cast<long>((words[0] - 1) / static_cast<std::ptrdiff_t>(sizeof(void *)));
}

void check_slot(const char *iface, const char *method, long actual, long expected)
{
    if (actual == expected) {
        ++g_passed;
    } else {
        ++g_failed;
        std::printf("MISMATCH %s::%s: slot %ld, expected %ld\n", iface, method, actual, expected);
    }
}

// One virtual method appended to an interface: its slot is the interface's vtable length.
template <class Base> struct Probe : Base {
    virtual void ProbeNext() {}
};

void check_length(const char *iface, long actual, long expected)
{
    if (actual == expected) {
        ++g_other_passed;
    } else {
        ++g_other_failed;
        std::printf("MISMATCH %s: vtable has %ld slots, expected %ld (a method is missing from "
                    "the table or misplaced)\n",
                    iface, actual, expected);
    }
}

void check_iid(const char *name, const IID &iid, const char *expected)
{
    char text[40];
    std::snprintf(text, sizeof text, "%08lx-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                  static_cast<unsigned long>(iid.Data1), iid.Data2, iid.Data3, iid.Data4[0],
                  iid.Data4[1], iid.Data4[2], iid.Data4[3], iid.Data4[4], iid.Data4[5],
                  iid.Data4[6], iid.Data4[7]);
    if (std::strcmp(text, expected) == 0) {
        ++g_other_passed;
    } else {
        ++g_other_failed;
        std::printf("MISMATCH %s: %s, expected %s\n", name, text, expected);
    }
}

} // namespace

// S(Class, Method, expected MSVC slot). #M is the name as written (before windows.h macros).
#define S(C, M, N) check_slot(#C, #M, slot_of(&C::M), N)
// L(Class, expected number of vtable slots as laid out by g++).
#define L(C, N) check_length(#C, slot_of(&Probe<C>::ProbeNext), N)

int main()
{
    // ---- module.h ----
    S(IModuleAllocator, AllocateMemory, 0);
    L(IModuleAllocator, 1);

    S(IHttpModuleFactory, GetHttpModule, 0);
    S(IHttpModuleFactory, Terminate, 1);
    L(IHttpModuleFactory, 2);

    S(CHttpModule, OnBeginRequest, 0);
    S(CHttpModule, OnPostBeginRequest, 1);
    S(CHttpModule, OnAuthenticateRequest, 2);
    S(CHttpModule, OnPostAuthenticateRequest, 3);
    S(CHttpModule, OnAuthorizeRequest, 4);
    S(CHttpModule, OnPostAuthorizeRequest, 5);
    S(CHttpModule, OnResolveRequestCache, 6);
    S(CHttpModule, OnPostResolveRequestCache, 7);
    S(CHttpModule, OnMapRequestHandler, 8);
    S(CHttpModule, OnPostMapRequestHandler, 9);
    S(CHttpModule, OnAcquireRequestState, 10);
    S(CHttpModule, OnPostAcquireRequestState, 11);
    S(CHttpModule, OnPreExecuteRequestHandler, 12);
    S(CHttpModule, OnPostPreExecuteRequestHandler, 13);
    S(CHttpModule, OnExecuteRequestHandler, 14);
    S(CHttpModule, OnPostExecuteRequestHandler, 15);
    S(CHttpModule, OnReleaseRequestState, 16);
    S(CHttpModule, OnPostReleaseRequestState, 17);
    S(CHttpModule, OnUpdateRequestCache, 18);
    S(CHttpModule, OnPostUpdateRequestCache, 19);
    S(CHttpModule, OnLogRequest, 20);
    S(CHttpModule, OnPostLogRequest, 21);
    S(CHttpModule, OnEndRequest, 22);
    S(CHttpModule, OnPostEndRequest, 23);
    S(CHttpModule, OnSendResponse, 24);
    S(CHttpModule, OnMapPath, 25);
    S(CHttpModule, OnReadEntity, 26);
    S(CHttpModule, OnCustomRequestNotification, 27);
    S(CHttpModule, OnAsyncCompletion, 28);
    S(CHttpModule, Dispose, 29);
    // Slot 30 is the destructor: one entry under MSVC, two (complete + deleting) under g++.
    L(CHttpModule, 32);

    S(CGlobalModule, OnGlobalStopListening, 0);
    S(CGlobalModule, OnGlobalCacheCleanup, 1);
    S(CGlobalModule, OnGlobalCacheOperation, 2);
    S(CGlobalModule, OnGlobalHealthCheck, 3);
    S(CGlobalModule, OnGlobalConfigurationChange, 4);
    S(CGlobalModule, OnGlobalFileChange, 5);
    S(CGlobalModule, OnGlobalPreBeginRequest, 6);
    S(CGlobalModule, OnGlobalApplicationStart, 7);
    S(CGlobalModule, OnGlobalApplicationResolveModules, 8);
    S(CGlobalModule, OnGlobalApplicationStop, 9);
    S(CGlobalModule, OnGlobalRSCAQuery, 10);
    S(CGlobalModule, OnGlobalTraceEvent, 11);
    S(CGlobalModule, OnGlobalCustomNotification, 12);
    S(CGlobalModule, Terminate, 13);
    S(CGlobalModule, OnGlobalThreadCleanup, 14);
    S(CGlobalModule, OnGlobalApplicationPreload, 15);
    S(CGlobalModule, OnSuspendProcess, 16);
    L(CGlobalModule, 17);

    S(IHttpModuleRegistrationInfo, GetName, 0);
    S(IHttpModuleRegistrationInfo, GetId, 1);
    S(IHttpModuleRegistrationInfo, SetRequestNotifications, 2);
    S(IHttpModuleRegistrationInfo, SetGlobalNotifications, 3);
    S(IHttpModuleRegistrationInfo, SetPriorityForRequestNotification, 4);
    S(IHttpModuleRegistrationInfo, SetPriorityForGlobalNotification, 5);
    L(IHttpModuleRegistrationInfo, 6);

    // ---- server.h ----
    S(IHttpServer, IsCommandLineLaunch, 0);
    S(IHttpServer, GetAppPoolName, 1);
    S(IHttpServer, AssociateWithThreadPool, 2);
    S(IHttpServer, IncrementThreadCount, 3);
    S(IHttpServer, DecrementThreadCount, 4);
    S(IHttpServer, ReportUnhealthy, 5);
    S(IHttpServer, RecycleProcess, 6);
    S(IHttpServer, GetAdminManager, 7);
    S(IHttpServer, GetFileInfo, 8);
    S(IHttpServer, FlushKernelCache, 9);
    S(IHttpServer, DoCacheOperation, 10);
    S(IHttpServer, NotifyCustomNotification, 11);
    S(IHttpServer, GetPerfCounterInfo, 12);
    S(IHttpServer, RecycleApplication, 13);
    S(IHttpServer, NotifyConfigurationChange, 14);
    S(IHttpServer, NotifyFileChange, 15);
    S(IHttpServer, DispenseContainer, 16);
    S(IHttpServer, AddFragmentToCache, 17);
    S(IHttpServer, ReadFragmentFromCache, 18);
    S(IHttpServer, RemoveFragmentFromCache, 19);
    S(IHttpServer, GetWorkerProcessSettings, 20);
    S(IHttpServer, GetProtocolManagerCustomInterface, 21);
    S(IHttpServer, SatisfiesPrecondition, 22);
    S(IHttpServer, GetTraceContext, 23);
    S(IHttpServer, RegisterFileChangeMonitor, 24);
    S(IHttpServer, GetExtendedInterface, 25);
    L(IHttpServer, 26);
    S(IHttpServer2, GetToken, 26);
    S(IHttpServer2, GetAppPoolConfigFile, 27);
    S(IHttpServer2, GetExtendedInterfaceByGuid, 28); // Microsoft: GetExtendedInterface
    S(IHttpServer2, GetMetadata, 29);
    S(IHttpServer2, GetWorkerProcessFramework, 30);
    L(IHttpServer2, 31);

    // ---- context.h ----
    S(IHttpContext, GetSite, 0);
    S(IHttpContext, GetApplication, 1);
    S(IHttpContext, GetConnection, 2);
    S(IHttpContext, GetRequest, 3);
    S(IHttpContext, GetResponse, 4);
    S(IHttpContext, GetResponseHeadersSent, 5);
    S(IHttpContext, GetUser, 6);
    S(IHttpContext, GetModuleContextContainer, 7);
    S(IHttpContext, IndicateCompletion, 8);
    S(IHttpContext, PostCompletion, 9);
    S(IHttpContext, DisableNotifications, 10);
    S(IHttpContext, GetNextNotification, 11);
    S(IHttpContext, GetIsLastNotification, 12);
    S(IHttpContext, ExecuteRequest, 13);
    S(IHttpContext, GetExecuteFlags, 14);
    S(IHttpContext, GetServerVariableA, 15); // Microsoft: GetServerVariable(PCSTR, PCSTR*, ...)
    S(IHttpContext, GetServerVariableW, 16); // Microsoft: GetServerVariable(PCSTR, PCWSTR*, ...)
    S(IHttpContext, SetServerVariable, 17);
    S(IHttpContext, AllocateRequestMemory, 18);
    S(IHttpContext, GetUrlInfo, 19);
    S(IHttpContext, GetMetadata, 20);
    S(IHttpContext, GetPhysicalPath, 21);
    S(IHttpContext, GetScriptName, 22);
    S(IHttpContext, GetScriptTranslated, 23);
    S(IHttpContext, GetScriptMap, 24);
    S(IHttpContext, SetRequestHandled, 25);
    S(IHttpContext, GetFileInfo, 26);
    S(IHttpContext, MapPath, 27);
    S(IHttpContext, NotifyCustomNotification, 28);
    S(IHttpContext, GetParentContext, 29);
    S(IHttpContext, GetRootContext, 30);
    S(IHttpContext, CloneContext, 31);
    S(IHttpContext, ReleaseClonedContext, 32);
    S(IHttpContext, GetCurrentExecutionStats, 33);
    S(IHttpContext, GetTraceContext, 34);
    S(IHttpContext, GetServerVarChanges, 35);
    S(IHttpContext, CancelIo, 36);
    S(IHttpContext, MapHandler, 37);
    S(IHttpContext, GetExtendedInterface, 38);
    L(IHttpContext, 39);
    S(IHttpContext2, GetOriginalUser, 39);
    L(IHttpContext2, 40);
    S(IHttpContext3, GetNamedContextContainer, 40);
    S(IHttpContext3, EnableFullDuplex, 41);
    S(IHttpContext3, InheritServerVariable, 42);
    S(IHttpContext3, PostCompletionWithCallback, 43); // Microsoft: PostCompletion
    L(IHttpContext3, 44);

    // IHttpSite and INamedContextContainer: not in iis-abi.md; TerraFX [VtblIndex] numbers.
    S(IHttpSite, GetSiteId, 0);
    S(IHttpSite, GetSiteName, 1);
    S(IHttpSite, GetModuleContextContainer, 2);
    S(IHttpSite, GetPerfCounterInfo, 3);
    L(IHttpSite, 4);

    S(IHttpApplication, GetApplicationPhysicalPath, 0);
    S(IHttpApplication, GetApplicationId, 1);
    S(IHttpApplication, GetAppConfigPath, 2);
    S(IHttpApplication, GetModuleContextContainer, 3);
    L(IHttpApplication, 4);

    S(IHttpConnection, IsConnected, 0);
    S(IHttpConnection, AllocateMemory, 1);
    S(IHttpConnection, GetModuleContextContainer, 2);
    L(IHttpConnection, 3);

    S(IHttpUser, GetRemoteUserName, 0);
    S(IHttpUser, GetUserName, 1);
    S(IHttpUser, GetAuthenticationType, 2);
    S(IHttpUser, GetPassword, 3);
    S(IHttpUser, GetImpersonationToken, 4);
    S(IHttpUser, GetPrimaryToken, 5);
    S(IHttpUser, ReferenceUser, 6);
    S(IHttpUser, DereferenceUser, 7);
    S(IHttpUser, SupportsIsInRole, 8);
    S(IHttpUser, IsInRole, 9);
    S(IHttpUser, GetUserVariable, 10);
    L(IHttpUser, 11);

    S(IHttpStoredContext, CleanupStoredContext, 0);
    L(IHttpStoredContext, 1);
    S(IHttpConnectionStoredContext, NotifyDisconnect, 1);
    L(IHttpConnectionStoredContext, 2);

    S(IHttpModuleContextContainer, GetModuleContext, 0);
    S(IHttpModuleContextContainer, SetModuleContext, 1);
    L(IHttpModuleContextContainer, 2);
    S(IHttpConnectionModuleContextContainer, GetConnectionModuleContext, 2);
    S(IHttpConnectionModuleContextContainer, SetConnectionModuleContext, 3);
    L(IHttpConnectionModuleContextContainer, 4);

    S(INamedContextContainer, GetNamedContext, 0);
    S(INamedContextContainer, SetNamedContext, 1);
    L(INamedContextContainer, 2);

    // ---- events.h ----
    S(IHttpEventProvider, SetErrorStatus, 0);
    L(IHttpEventProvider, 1);
    S(IHttpCompletionInfo, GetCompletionBytes, 0);
    S(IHttpCompletionInfo, GetCompletionStatus, 1);
    L(IHttpCompletionInfo, 2);
    // The two global providers: not in iis-abi.md; httpserv_xp.h order, TerraFX numbers.
    S(IGlobalStopListeningProvider, DrainRequestsGracefully, 1);
    L(IGlobalStopListeningProvider, 2);
    S(IGlobalConfigurationChangeProvider, GetChangePath, 1);
    L(IGlobalConfigurationChangeProvider, 2);
    S(IHttpApplicationProvider, GetApplication, 1);
    L(IHttpApplicationProvider, 2);

    // ---- request.h ----
    S(IHttpRequest, GetRawHttpRequestConst, 0); // Microsoft: GetRawHttpRequest() const
    S(IHttpRequest, GetRawHttpRequest, 1);
    S(IHttpRequest, GetHeaderById, 2);      // Microsoft: GetHeader(HTTP_HEADER_ID, ...)
    S(IHttpRequest, GetHeaderByName, 3);    // Microsoft: GetHeader(PCSTR, ...)
    S(IHttpRequest, SetHeaderById, 4);      // Microsoft: SetHeader(HTTP_HEADER_ID, ...)
    S(IHttpRequest, SetHeaderByName, 5);    // Microsoft: SetHeader(PCSTR, ...)
    S(IHttpRequest, DeleteHeaderById, 6);   // Microsoft: DeleteHeader(HTTP_HEADER_ID)
    S(IHttpRequest, DeleteHeaderByName, 7); // Microsoft: DeleteHeader(PCSTR)
    S(IHttpRequest, GetHttpMethod, 8);
    S(IHttpRequest, SetHttpMethod, 9);
    S(IHttpRequest, SetUrlA, 10); // Microsoft: SetUrl(PCSTR, ...)
    S(IHttpRequest, SetUrlW, 11); // Microsoft: SetUrl(PCWSTR, ...)
    S(IHttpRequest, GetUrlChanged, 12);
    S(IHttpRequest, GetForwardedUrl, 13);
    S(IHttpRequest, GetLocalAddress, 14);
    S(IHttpRequest, GetRemoteAddress, 15);
    S(IHttpRequest, ReadEntityBody, 16);
    S(IHttpRequest, InsertEntityBody, 17);
    S(IHttpRequest, GetRemainingEntityBytes, 18);
    S(IHttpRequest, GetHttpVersion, 19);
    S(IHttpRequest, GetClientCertificate, 20);
    S(IHttpRequest, NegotiateClientCertificate, 21);
    S(IHttpRequest, GetSiteId, 22);
    S(IHttpRequest, GetHeaderChanges, 23);
    L(IHttpRequest, 24);
    S(IHttpRequest2, GetChannelBindingToken, 24);
    L(IHttpRequest2, 25);

    // ---- response.h ----
    S(IHttpResponse, GetRawHttpResponseConst, 0); // Microsoft: GetRawHttpResponse() const
    S(IHttpResponse, GetRawHttpResponse, 1);
    S(IHttpResponse, GetCachePolicy, 2);
    S(IHttpResponse, SetStatus, 3);
    S(IHttpResponse, SetHeaderById, 4);      // Microsoft: SetHeader(HTTP_HEADER_ID, ...)
    S(IHttpResponse, SetHeaderByName, 5);    // Microsoft: SetHeader(PCSTR, ...)
    S(IHttpResponse, DeleteHeaderById, 6);   // Microsoft: DeleteHeader(HTTP_HEADER_ID)
    S(IHttpResponse, DeleteHeaderByName, 7); // Microsoft: DeleteHeader(PCSTR)
    S(IHttpResponse, GetHeaderById, 8);      // Microsoft: GetHeader(HTTP_HEADER_ID, ...)
    S(IHttpResponse, GetHeaderByName, 9);    // Microsoft: GetHeader(PCSTR, ...)
    S(IHttpResponse, Clear, 10);
    S(IHttpResponse, ClearHeaders, 11);
    S(IHttpResponse, SetNeedDisconnect, 12);
    S(IHttpResponse, ResetConnection, 13);
    S(IHttpResponse, DisableKernelCache, 14);
    S(IHttpResponse, GetKernelCacheEnabled, 15);
    S(IHttpResponse, SuppressHeaders, 16);
    S(IHttpResponse, GetHeadersSuppressed, 17);
    S(IHttpResponse, Flush, 18);
    S(IHttpResponse, Redirect, 19);
    S(IHttpResponse, WriteEntityChunkByReference, 20);
    S(IHttpResponse, WriteEntityChunks, 21);
    S(IHttpResponse, DisableBuffering, 22);
    S(IHttpResponse, GetStatus, 23);
    S(IHttpResponse, SetErrorDescription, 24);
    S(IHttpResponse, GetErrorDescription, 25);
    S(IHttpResponse, GetHeaderChanges, 26);
    S(IHttpResponse, CloseConnection, 27);
    L(IHttpResponse, 28);
    // IHttpResponse2/3/4: TerraFX.Interop.Windows' [VtblIndex] numbers (Silk.NET's transcription
    // of httpserv.h, Windows SDK 10.0.26100: IHttpResponse4 : IHttpResponse3 : IHttpResponse2).
    S(IHttpResponse2, WriteEntityChunksWithCallback, 28); // Microsoft: WriteEntityChunks
    S(IHttpResponse2, FlushWithCallback, 29);             // Microsoft: Flush
    L(IHttpResponse2, 30);
    S(IHttpResponse3, PushPromise, 30);
    L(IHttpResponse3, 31);
    S(IHttpResponse4, DeleteTrailer, 31);
    S(IHttpResponse4, GetTrailer, 32);
    S(IHttpResponse4, ResetStream, 33);
    S(IHttpResponse4, SetNeedGoAway, 34);
    S(IHttpResponse4, SetTrailer, 35);
    L(IHttpResponse4, 36);

    // ---- websocket.h ----
    S(IWebSocketContext, CleanupStoredContext, 0);
    S(IWebSocketContext, WriteFragment, 1);
    S(IWebSocketContext, ReadFragment, 2);
    S(IWebSocketContext, SendConnectionClose, 3);
    S(IWebSocketContext, GetCloseStatus, 4);
    S(IWebSocketContext, CloseTcpConnection, 5);
    S(IWebSocketContext, CancelOutstandingIO, 6);
    L(IWebSocketContext, 7);

    // ---- ahadmin.h (COM: slots 0-2 are IUnknown's) ----
    S(IAppHostAdminManager, GetAdminSection, 3);
    S(IAppHostAdminManager, GetMetadata, 4);
    S(IAppHostAdminManager, SetMetadata, 5);
    S(IAppHostAdminManager, get_ConfigManager, 6);
    L(IAppHostAdminManager, 7);

    S(IAppHostElement, get_Name, 3);
    S(IAppHostElement, get_Collection, 4);
    S(IAppHostElement, get_Properties, 5);
    S(IAppHostElement, get_ChildElements, 6);
    S(IAppHostElement, GetMetadata, 7);
    S(IAppHostElement, SetMetadata, 8);
    S(IAppHostElement, get_Schema, 9);
    S(IAppHostElement, GetElementByName, 10);
    S(IAppHostElement, GetPropertyByName, 11);
    S(IAppHostElement, Clear, 12);
    S(IAppHostElement, get_Methods, 13);
    L(IAppHostElement, 14);

    // The collections and IAppHostProperty: not in iis-abi.md; TerraFX [VtblIndex] numbers.
    S(IAppHostProperty, get_Name, 3);
    S(IAppHostProperty, get_Value, 4);
    S(IAppHostProperty, put_Value, 5);
    S(IAppHostProperty, Clear, 6);
    S(IAppHostProperty, get_StringValue, 7);
    S(IAppHostProperty, get_Exception, 8);
    S(IAppHostProperty, GetMetadata, 9);
    S(IAppHostProperty, SetMetadata, 10);
    S(IAppHostProperty, get_Schema, 11);
    L(IAppHostProperty, 12);

    S(IAppHostPropertyCollection, get_Count, 3);
    S(IAppHostPropertyCollection, get_Item, 4);
    L(IAppHostPropertyCollection, 5);

    S(IAppHostElementCollection, get_Count, 3);
    S(IAppHostElementCollection, get_Item, 4);
    S(IAppHostElementCollection, AddElement, 5);
    S(IAppHostElementCollection, DeleteElement, 6);
    S(IAppHostElementCollection, Clear, 7);
    S(IAppHostElementCollection, CreateNewElement, 8);
    S(IAppHostElementCollection, get_Schema, 9);
    L(IAppHostElementCollection, 10);

    S(IAppHostChildElementCollection, get_Count, 3);
    S(IAppHostChildElementCollection, get_Item, 4);
    L(IAppHostChildElementCollection, 5);

    // ---- IIDs ----
    check_iid("IID_IHttpContext", IID_IHttpContext, "424c1b8c-a1ba-44d7-ac98-9f8f457701a5");
    check_iid("IID_IHttpContext3", IID_IHttpContext3, "bf53c022-ca4b-4349-a38e-a4b78ad897fb");
    check_iid("IID_IHttpResponse2", IID_IHttpResponse2, "0822c871-f14e-4974-a1e6-5b3c1f09b76a");
    check_iid("IID_IHttpServer2", IID_IHttpServer2, "34af637e-afe8-4556-bcc1-767f8e0b4a4e");
    check_iid("IID_IAppHostAdminManager", IID_IAppHostAdminManager,
              "9be77978-73ed-4a9a-87fd-13f09fec1b13");
    check_iid("IID_IAppHostElement", IID_IAppHostElement, "64ff8ccc-b287-4dae-b08a-a72cbf45f453");
    check_iid("IID_IAppHostProperty", IID_IAppHostProperty,
              "ed35f7a1-5024-4e7b-a44d-07ddaf4b524d");
    check_iid("IID_IAppHostPropertyCollection", IID_IAppHostPropertyCollection,
              "0191775e-bcff-445a-b4f4-3bdda54e2816");
    check_iid("IID_IAppHostElementCollection", IID_IAppHostElementCollection,
              "c8550bff-5281-4b1e-ac34-99b6fa38464d");
    check_iid("IID_IAppHostChildElementCollection", IID_IAppHostChildElementCollection,
              "08a90f5f-0702-48d6-b45f-02a9885a9768");

    std::printf("other checks (vtable lengths, IIDs): %d passed, %d failed\n", g_other_passed,
                g_other_failed);
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    std::fflush(stdout);
    return (g_failed == 0 && g_other_failed == 0) ? 0 : 1;
}
