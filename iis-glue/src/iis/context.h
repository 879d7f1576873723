// IIS native-module ABI: the request context and what hangs off it (IHttpContext..3, site,
// application, connection, user, stored contexts and their containers).
//
// Clean-room declaration written from public facts (Microsoft Learn, TerraFX.Interop.Windows
// [VtblIndex] numbers, dotnet/aspnetcore's MIT httpserv_xp.h); no Microsoft header text copied.
// No overloaded virtual methods: MSVC and g++ order overloads differently in the vtable, so
// every method has its own name at its MSVC slot. Slot numbers are in the comments and are
// checked by iis-glue/tests/vtable_slots.cpp.
#pragma once

#include "types.h"

// ---- Stored contexts and containers ----

// Module data kept by IIS on a request, connection, application or name; IIS calls
// CleanupStoredContext when the owner goes away.
class IHttpStoredContext {
public:
    virtual VOID CleanupStoredContext() = 0; // 0
};

// A stored context on a connection, told when the client disconnects.
class IHttpConnectionStoredContext : public IHttpStoredContext {
public:
    virtual VOID NotifyDisconnect() = 0; // 1
};

class IHttpModuleContextContainer {
public:
    virtual IHttpStoredContext *GetModuleContext(HTTP_MODULE_ID moduleId) = 0; // 0
    virtual HRESULT SetModuleContext(IHttpStoredContext *ppStoredContext,
                                     HTTP_MODULE_ID moduleId) = 0; // 1
};

class IHttpConnectionModuleContextContainer : public IHttpModuleContextContainer {
public:
    virtual IHttpConnectionStoredContext *GetConnectionModuleContext(HTTP_MODULE_ID moduleId) = 0; // 2
    virtual HRESULT SetConnectionModuleContext(IHttpConnectionStoredContext *ppStoredContext,
                                               HTTP_MODULE_ID moduleId) = 0; // 3
};

// From IHttpContext3::GetNamedContextContainer; GetNamedContext(L"websockets") yields the
// IWebSocketContext. Slots from TerraFX's INamedContextContainer [VtblIndex] numbers.
class INamedContextContainer {
public:
    virtual IHttpStoredContext *GetNamedContext(LPCWSTR szName) = 0; // 0
    virtual HRESULT SetNamedContext(IHttpStoredContext *ppStoredContext, LPCWSTR szName) = 0; // 1
};

// ---- Site, application, connection, user ----

// Slots from httpserv_xp.h's declaration order (no overloads) and TerraFX's IHttpSite.
class IHttpSite {
public:
    virtual DWORD GetSiteId() const = 0;                                // 0
    virtual PCWSTR GetSiteName() const = 0;                             // 1
    virtual IHttpModuleContextContainer *GetModuleContextContainer() = 0; // 2
    virtual IHttpPerfCounterInfo *GetPerfCounterInfo() = 0;             // 3
};

class IHttpApplication {
public:
    virtual PCWSTR GetApplicationPhysicalPath() const = 0;              // 0
    virtual PCWSTR GetApplicationId() const = 0;                        // 1
    // Configuration path, e.g. MACHINE/WEBROOT/APPHOST/Default Web Site/app.
    virtual PCWSTR GetAppConfigPath() const = 0;                        // 2
    virtual IHttpModuleContextContainer *GetModuleContextContainer() = 0; // 3
};

class IHttpConnection {
public:
    virtual BOOL IsConnected() const = 0;                                         // 0
    virtual VOID *AllocateMemory(DWORD cbAllocation) = 0;                         // 1
    virtual IHttpConnectionModuleContextContainer *GetModuleContextContainer() = 0; // 2
};

// windows.h defines GetUserName as GetUserNameA/GetUserNameW; as with Microsoft's own header the
// method name follows that macro, consistently for every caller. The slot is what IIS uses.
class IHttpUser {
public:
    virtual PCWSTR GetRemoteUserName() = 0;     // 0
    virtual PCWSTR GetUserName() = 0;           // 1
    virtual PCWSTR GetAuthenticationType() = 0; // 2
    virtual PCWSTR GetPassword() = 0;           // 3
    virtual HANDLE GetImpersonationToken() = 0; // 4
    virtual HANDLE GetPrimaryToken() = 0;       // 5
    virtual VOID ReferenceUser() = 0;           // 6
    virtual VOID DereferenceUser() = 0;         // 7
    virtual BOOL SupportsIsInRole() = 0;        // 8
    virtual HRESULT IsInRole(PCWSTR pszRoleName, BOOL *pfInRole) = 0; // 9
    virtual PVOID GetUserVariable(PCSTR pszVariableName) = 0;         // 10
};

// ---- The request context ----

class IHttpContext {
public:
    virtual IHttpSite *GetSite() = 0;                                      // 0
    virtual IHttpApplication *GetApplication() = 0;                        // 1
    virtual IHttpConnection *GetConnection() = 0;                          // 2
    virtual IHttpRequest *GetRequest() = 0;                                // 3
    virtual IHttpResponse *GetResponse() = 0;                              // 4
    virtual BOOL GetResponseHeadersSent() const = 0;                       // 5
    virtual IHttpUser *GetUser() const = 0;                                // 6
    virtual IHttpModuleContextContainer *GetModuleContextContainer() = 0;  // 7
    // 8: resume the pipeline on the calling thread after RQ_NOTIFICATION_PENDING.
    virtual VOID IndicateCompletion(REQUEST_NOTIFICATION_STATUS notificationStatus) = 0;
    // 9: make IIS call OnAsyncCompletion on one of its threads.
    virtual HRESULT PostCompletion(DWORD cbBytes) = 0;
    virtual VOID DisableNotifications(DWORD dwNotifications, DWORD dwPostNotifications) = 0; // 10
    virtual BOOL GetNextNotification(REQUEST_NOTIFICATION_STATUS status, DWORD *pdwNotification,
                                     BOOL *pfIsPostNotification, CHttpModule **ppModuleInfo,
                                     IHttpEventProvider **ppRequestOutput) = 0; // 11
    virtual BOOL GetIsLastNotification(REQUEST_NOTIFICATION_STATUS status) = 0; // 12
    virtual HRESULT ExecuteRequest(BOOL fAsync, IHttpContext *pHttpContext, DWORD dwExecuteFlags,
                                   IHttpUser *pHttpUser, BOOL *pfCompletionExpected) = 0; // 13
    virtual DWORD GetExecuteFlags() const = 0; // 14
    // 15. Microsoft name: GetServerVariable (the PCSTR overload).
    virtual HRESULT GetServerVariableA(PCSTR pszVariableName, PCSTR *ppszValue,
                                       DWORD *pcchValueLength) = 0;
    // 16. Microsoft name: GetServerVariable (the PCWSTR overload).
    virtual HRESULT GetServerVariableW(PCSTR pszVariableName, PCWSTR *ppszValue,
                                       DWORD *pcchValueLength) = 0;
    virtual HRESULT SetServerVariable(PCSTR pszVariableName, PCWSTR pszVariableValue) = 0; // 17
    virtual VOID *AllocateRequestMemory(DWORD cbAllocation) = 0;       // 18
    virtual IHttpUrlInfo *GetUrlInfo() = 0;                            // 19
    virtual IMetadataInfo *GetMetadata() = 0;                          // 20
    virtual PCWSTR GetPhysicalPath(DWORD *pcchPhysicalPath) = 0;       // 21
    virtual PCWSTR GetScriptName(DWORD *pcchScriptName) const = 0;     // 22
    virtual PCWSTR GetScriptTranslated(DWORD *pcchScriptTranslated) = 0; // 23
    virtual IScriptMapInfo *GetScriptMap() const = 0;                  // 24
    virtual VOID SetRequestHandled() = 0;                              // 25
    virtual IHttpFileInfo *GetFileInfo() const = 0;                    // 26
    virtual HRESULT MapPath(PCWSTR pszUrl, PWSTR pszPhysicalPath, DWORD *pcbPhysicalPath) = 0; // 27
    virtual HRESULT NotifyCustomNotification(ICustomNotificationProvider *pCustomOutput,
                                             BOOL *pfCompletionExpected) = 0; // 28
    virtual IHttpContext *GetParentContext() const = 0;                // 29
    virtual IHttpContext *GetRootContext() const = 0;                  // 30
    virtual HRESULT CloneContext(DWORD dwCloneFlags, IHttpContext **ppHttpContext) = 0; // 31
    virtual HRESULT ReleaseClonedContext() = 0;                        // 32
    virtual HRESULT GetCurrentExecutionStats(DWORD *pdwNotification,
                                             DWORD *pdwNotificationStartTickCount,
                                             PCWSTR *ppszModule, DWORD *pdwModuleStartTickCount,
                                             DWORD *pdwAsyncNotification,
                                             DWORD *pdwAsyncNotificationStartTickCount) const = 0; // 33
    virtual IHttpTraceContext *GetTraceContext() const = 0;            // 34
    virtual HRESULT GetServerVarChanges(DWORD dwOldChangeNumber, DWORD *pdwNewChangeNumber,
                                        DWORD *pdwVariableSnapshot,
                                        PCSTR **ppVariableNameSnapshot,
                                        PCWSTR **ppVariableValueSnapshot,
                                        DWORD *pdwDiffedVariables,
                                        DWORD **ppDiffedVariableIndices) = 0; // 35
    virtual HRESULT CancelIo() = 0;                                    // 36
    virtual HRESULT MapHandler(DWORD dwSiteId, PCWSTR pszSiteName, PCWSTR pszUrl, PCSTR pszVerb,
                               IScriptMapInfo **ppScriptMap,
                               BOOL fIgnoreWildcardMappings) = 0;      // 37
    // 38: deprecated by Microsoft; use IHttpServer2::GetExtendedInterfaceByGuid.
    virtual HRESULT GetExtendedInterface(HTTP_CONTEXT_INTERFACE_VERSION version,
                                         PVOID *ppInterface) = 0;
};

class IHttpContext2 : public IHttpContext {
public:
    virtual IHttpUser *GetOriginalUser() const = 0; // 39
};

// Obtained with IHttpServer2::GetExtendedInterfaceByGuid(IID_IHttpContext, ctx,
// IID_IHttpContext3, &ctx3).
class IHttpContext3 : public IHttpContext2 {
public:
    virtual INamedContextContainer *GetNamedContextContainer() = 0;        // 40
    // 41: allow a read and a write to be outstanding at once (WebSockets).
    virtual VOID EnableFullDuplex() = 0;
    virtual HRESULT InheritServerVariable(PCSTR szName, BOOL fFailIfNotExist) = 0; // 42
    // 43. Microsoft name: PostCompletion (it would hide IHttpContext's slot-9 method).
    virtual HRESULT PostCompletionWithCallback(DWORD cbBytes,
                                               LPOVERLAPPED_COMPLETION_ROUTINE pfnCompletionRoutine,
                                               void *pvCompletionContext) = 0;
};
