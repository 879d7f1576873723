// IIS native-module ABI: the server (IHttpServer, IHttpServer2).
//
// Clean-room declaration written from public facts (Microsoft Learn, TerraFX.Interop.Windows
// [VtblIndex] numbers, dotnet/aspnetcore's MIT httpserv_xp.h); no Microsoft header text copied.
// No overloaded virtual methods: MSVC and g++ order overloads differently in the vtable, so
// every method has its own name at its MSVC slot. Slot numbers are in the comments and are
// checked by iis-glue/tests/vtable_slots.cpp.
#pragma once

#include "types.h"

// Passed to RegisterModule; valid for the life of the worker process.
class IHttpServer {
public:
    virtual BOOL IsCommandLineLaunch() const = 0;                        // 0
    virtual PCWSTR GetAppPoolName() const = 0;                           // 1
    virtual HRESULT AssociateWithThreadPool(HANDLE hHandle,
                                            LPOVERLAPPED_COMPLETION_ROUTINE completionRoutine) = 0; // 2
    virtual VOID IncrementThreadCount() = 0;                              // 3
    virtual VOID DecrementThreadCount() = 0;                              // 4
    virtual VOID ReportUnhealthy(PCWSTR pszReasonString, HRESULT hrReason) = 0; // 5
    virtual VOID RecycleProcess(PCWSTR pszReason) = 0;                    // 6
    virtual IAppHostAdminManager *GetAdminManager() const = 0;            // 7
    virtual HRESULT GetFileInfo(PCWSTR pszPhysicalPath, HANDLE hUserToken, PSID pSid,
                                PCWSTR pszChangeNotificationPath, HANDLE hChangeNotificationToken,
                                BOOL fCache, IHttpFileInfo **ppFileInfo,
                                IHttpTraceContext *pHttpTraceContext) = 0; // 8
    virtual HRESULT FlushKernelCache(PCWSTR pszUrl) = 0;                  // 9
    virtual HRESULT DoCacheOperation(CACHE_OPERATION cacheOperation, IHttpCacheKey *pCacheKey,
                                     IHttpCacheSpecificData **ppCacheSpecificData,
                                     IHttpTraceContext *pHttpTraceContext) = 0; // 10
    virtual GLOBAL_NOTIFICATION_STATUS NotifyCustomNotification(
        ICustomNotificationProvider *pCustomOutput) = 0;                  // 11
    virtual IHttpPerfCounterInfo *GetPerfCounterInfo() = 0;               // 12
    virtual VOID RecycleApplication(PCWSTR pszAppConfigPath) = 0;         // 13
    virtual VOID NotifyConfigurationChange(PCWSTR pszPath) = 0;           // 14
    virtual VOID NotifyFileChange(PCWSTR pszFileName) = 0;                // 15
    virtual IDispensedHttpModuleContextContainer *DispenseContainer() = 0; // 16
    virtual HRESULT AddFragmentToCache(HTTP_DATA_CHUNK *pDataChunk,
                                       PCWSTR pszFragmentName) = 0;       // 17
    virtual HRESULT ReadFragmentFromCache(PCWSTR pszFragmentName, BYTE *pvBuffer, DWORD cbSize,
                                          DWORD *pcbCopied) = 0;          // 18
    virtual HRESULT RemoveFragmentFromCache(PCWSTR pszFragmentName) = 0;  // 19
    virtual HRESULT GetWorkerProcessSettings(IWpfSettings **ppWorkerProcessSettings) = 0; // 20
    virtual HRESULT GetProtocolManagerCustomInterface(PCWSTR pProtocolManagerDll,
                                                      PCWSTR pProtocolManagerDllInitFunction,
                                                      DWORD dwCustomInterfaceId,
                                                      PVOID *ppCustomInterface) = 0; // 21
    virtual BOOL SatisfiesPrecondition(PCWSTR pszPrecondition,
                                       BOOL *pfUnknownPrecondition) const = 0; // 22
    virtual IHttpTraceContext *GetTraceContext() const = 0;               // 23
    virtual HRESULT RegisterFileChangeMonitor(PCWSTR pszPath, HANDLE hToken,
                                              IHttpFileMonitor **ppFileMonitor) = 0; // 24
    // 25: with HTTP_SERVER_INTERFACE_V2 yields the IHttpServer2 of this server.
    virtual HRESULT GetExtendedInterface(HTTP_SERVER_INTERFACE_VERSION version,
                                         PVOID *ppInterface) = 0;
};

class IHttpServer2 : public IHttpServer {
public:
    virtual HRESULT GetToken(PCWSTR pszUserName, PCWSTR pszPassword, DWORD dwLogonMethod,
                             IHttpTokenEntry **ppTokenEntry, PCWSTR pszDefaultDomain,
                             PSOCKADDR pSockAddr, IHttpTraceContext *pHttpTraceContext) = 0; // 26
    virtual PCWSTR GetAppPoolConfigFile(DWORD *pcchConfigFilePath) const = 0;               // 27
    // 28. Microsoft name: GetExtendedInterface (it would hide IHttpServer's slot-25 method).
    // Maps an interface (pInput, identified by Version1) to an extended one (Version2), e.g.
    // (IID_IHttpContext, ctx, IID_IHttpContext3, &ctx3).
    virtual HRESULT GetExtendedInterfaceByGuid(const GUID &Version1, PVOID pInput,
                                               const GUID &Version2, PVOID *ppOutput) = 0;
    virtual HRESULT GetMetadata(PCWSTR pszSiteName, PCWSTR pszUrl,
                                IReferencedMetadataInfo **ppMetadataInfo) = 0; // 29
    virtual HRESULT GetWorkerProcessFramework(
        IWorkerProcessFramework **ppWorkerProcessFramework) = 0; // 30
};
