// IIS native-module ABI: the module side (CHttpModule, CGlobalModule, the factory, the
// allocator and the registration interface).
//
// Clean-room declaration written from public facts (Microsoft Learn, TerraFX.Interop.Windows
// [VtblIndex] numbers, dotnet/aspnetcore's MIT httpserv_xp.h); no Microsoft header text copied.
// No overloaded virtual methods: MSVC and g++ order overloads differently in the vtable, so
// every method has its own name at its MSVC slot. Slot numbers are in the comments and are
// checked by iis-glue/tests/vtable_slots.cpp.
#pragma once

#include "types.h"

// Memory from IIS for a module instance: allocate with placement new into AllocateMemory's
// block, give the module class an empty operator delete, IIS frees the block.
class IModuleAllocator {
public:
    virtual VOID *AllocateMemory(DWORD cbAllocation) = 0; // 0
};

// The base of a request module. IIS calls only the handlers the module registered for, through
// the vtable; a module must override every handler it registers for. The defaults here report
// the omission through OutputDebugString and continue (Microsoft's defaults call DebugBreak).
// Each handler takes the request context and the notification's provider and returns a
// REQUEST_NOTIFICATION_STATUS.
class CHttpModule {
public:
    virtual REQUEST_NOTIFICATION_STATUS OnBeginRequest(IHttpContext *, IHttpEventProvider *) // 0
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostBeginRequest(IHttpContext *, // 1
                                                           IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnAuthenticateRequest(IHttpContext *, // 2
                                                              IAuthenticationProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostAuthenticateRequest(IHttpContext *, // 3
                                                                  IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnAuthorizeRequest(IHttpContext *, // 4
                                                           IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostAuthorizeRequest(IHttpContext *, // 5
                                                               IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnResolveRequestCache(IHttpContext *, // 6
                                                              IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostResolveRequestCache(IHttpContext *, // 7
                                                                  IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnMapRequestHandler(IHttpContext *, // 8
                                                            IMapHandlerProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostMapRequestHandler(IHttpContext *, // 9
                                                                IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnAcquireRequestState(IHttpContext *, // 10
                                                              IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostAcquireRequestState(IHttpContext *, // 11
                                                                  IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPreExecuteRequestHandler(IHttpContext *, // 12
                                                                   IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostPreExecuteRequestHandler(IHttpContext *, // 13
                                                                       IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnExecuteRequestHandler(IHttpContext *, // 14
                                                                IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostExecuteRequestHandler(IHttpContext *, // 15
                                                                    IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnReleaseRequestState(IHttpContext *, // 16
                                                              IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostReleaseRequestState(IHttpContext *, // 17
                                                                  IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnUpdateRequestCache(IHttpContext *, // 18
                                                             IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostUpdateRequestCache(IHttpContext *, // 19
                                                                 IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnLogRequest(IHttpContext *, IHttpEventProvider *) // 20
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostLogRequest(IHttpContext *, // 21
                                                         IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnEndRequest(IHttpContext *, IHttpEventProvider *) // 22
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnPostEndRequest(IHttpContext *, // 23
                                                         IHttpEventProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnSendResponse(IHttpContext *, // 24
                                                       ISendResponseProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnMapPath(IHttpContext *, IMapPathProvider *) // 25
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnReadEntity(IHttpContext *, // 26
                                                     IReadEntityProvider *)
    {
        return NotOverridden();
    }
    virtual REQUEST_NOTIFICATION_STATUS OnCustomRequestNotification(IHttpContext *, // 27
                                                                    ICustomNotificationProvider *)
    {
        return NotOverridden();
    }
    // 28: completion of an asynchronous operation started in notification dwNotification
    // (fPostNotification: in its post-notification).
    virtual REQUEST_NOTIFICATION_STATUS OnAsyncCompletion(IHttpContext *pHttpContext,
                                                          DWORD dwNotification,
                                                          BOOL fPostNotification,
                                                          IHttpEventProvider *pProvider,
                                                          IHttpCompletionInfo *pCompletionInfo)
    {
        (void)pHttpContext;
        (void)dwNotification;
        (void)fPostNotification;
        (void)pProvider;
        (void)pCompletionInfo;
        return NotOverridden();
    }
    // 29: IIS calls this when the request is done with the module. Modules placed in
    // IModuleAllocator memory override it (or define an empty operator delete).
    virtual VOID Dispose() { delete this; }

protected:
    CHttpModule() {}
    // 30 (MSVC: one entry; Itanium/g++: two). Must stay the last virtual: IIS never calls it.
    virtual ~CHttpModule() {}

private:
    static REQUEST_NOTIFICATION_STATUS NotOverridden()
    {
        OutputDebugStringA("ancm-rs: a CHttpModule handler was called but not overridden\n");
        return RQ_NOTIFICATION_CONTINUE;
    }
};

// The base of a global module. No virtual destructor (Microsoft declares none); Terminate is
// where the module frees itself.
class CGlobalModule {
public:
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalStopListening(IGlobalStopListeningProvider *) // 0
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalCacheCleanup() { return NotOverridden(); } // 1
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalCacheOperation(ICacheProvider *) // 2
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalHealthCheck() { return NotOverridden(); } // 3
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalConfigurationChange( // 4
        IGlobalConfigurationChangeProvider *)
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalFileChange(IGlobalFileChangeProvider *) // 5
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalPreBeginRequest(IPreBeginRequestProvider *) // 6
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalApplicationStart( // 7
        IHttpApplicationStartProvider *)
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalApplicationResolveModules( // 8
        IHttpApplicationResolveModulesProvider *)
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalApplicationStop( // 9
        IHttpApplicationStopProvider *)
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalRSCAQuery(IGlobalRSCAQueryProvider *) // 10
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalTraceEvent(IGlobalTraceEventProvider *) // 11
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalCustomNotification( // 12
        ICustomNotificationProvider *)
    {
        return NotOverridden();
    }
    virtual VOID Terminate() = 0; // 13
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalThreadCleanup( // 14
        IGlobalThreadCleanupProvider *)
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnGlobalApplicationPreload( // 15
        IGlobalApplicationPreloadProvider *)
    {
        return NotOverridden();
    }
    virtual GLOBAL_NOTIFICATION_STATUS OnSuspendProcess( // 16
        IGlobalSuspendProcessCallback **)
    {
        return NotOverridden();
    }

private:
    static GLOBAL_NOTIFICATION_STATUS NotOverridden()
    {
        OutputDebugStringA("ancm-rs: a CGlobalModule handler was called but not overridden\n");
        return GL_NOTIFICATION_CONTINUE;
    }
};

// Creates one CHttpModule per request.
class IHttpModuleFactory {
public:
    virtual HRESULT GetHttpModule(CHttpModule **ppModule, IModuleAllocator *pAllocator) = 0; // 0
    virtual VOID Terminate() = 0;                                                          // 1
};

// Passed to RegisterModule.
class IHttpModuleRegistrationInfo {
public:
    virtual PCWSTR GetName() const = 0;       // 0
    virtual HTTP_MODULE_ID GetId() const = 0; // 1
    virtual HRESULT SetRequestNotifications(IHttpModuleFactory *pModuleFactory,
                                            DWORD dwRequestNotifications,
                                            DWORD dwPostRequestNotifications) = 0; // 2
    virtual HRESULT SetGlobalNotifications(CGlobalModule *pGlobalModule,
                                           DWORD dwGlobalNotifications) = 0; // 3
    virtual HRESULT SetPriorityForRequestNotification(DWORD dwRequestNotification,
                                                      PCWSTR pszPriority) = 0; // 4
    virtual HRESULT SetPriorityForGlobalNotification(DWORD dwGlobalNotification,
                                                     PCWSTR pszPriority) = 0; // 5
    // IHttpModuleRegistrationInfo2 adds 6 SetPriorityForPostRequestNotification (not needed).
};
