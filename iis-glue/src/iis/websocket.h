// IIS native-module ABI: IIS's WebSocket context (iiswebsocket.h, IIS 8+).
//
// Clean-room declaration written from public facts (Microsoft Learn, TerraFX.Interop.Windows
// [VtblIndex] numbers, dotnet/aspnetcore's MIT httpserv_xp.h); no Microsoft header text copied.
// No overloaded virtual methods: MSVC and g++ order overloads differently in the vtable, so
// every method has its own name at its MSVC slot. Slot numbers are in the comments and are
// checked by iis-glue/tests/vtable_slots.cpp.
#pragma once

#include "context.h"

// The name of the named context (INamedContextContainer::GetNamedContext) holding the
// IWebSocketContext once the 101 response is flushed.
#define IIS_WEBSOCKET L"websockets"
// The server variable IIS sets when the WebSocket module handled the upgrade.
#define IIS_WEBSOCKET_SERVER_VARIABLE "IIS_WEBSOCK"

// Completion of an asynchronous WriteFragment/ReadFragment/SendConnectionClose.
typedef VOID(WINAPI *PFN_WEBSOCKET_COMPLETION)(HRESULT hrError, VOID *pvCompletionContext,
                                               DWORD cbIO, BOOL fUTF8Encoded,
                                               BOOL fFinalFragment, BOOL fClose);

// Slot 0 is IHttpStoredContext::CleanupStoredContext.
class IWebSocketContext : public IHttpStoredContext {
public:
    virtual HRESULT WriteFragment(VOID *pData, DWORD *pcbSent, BOOL fAsync, BOOL fUTF8Encoded,
                                  BOOL fFinalFragment, PFN_WEBSOCKET_COMPLETION pfnCompletion,
                                  VOID *pvCompletionContext,
                                  BOOL *pfCompletionExpected) = 0; // 1
    virtual HRESULT ReadFragment(VOID *pData, DWORD *pcbData, BOOL fAsync, BOOL *pfUTF8Encoded,
                                 BOOL *pfFinalFragment, BOOL *pfConnectionClose,
                                 PFN_WEBSOCKET_COMPLETION pfnCompletion,
                                 VOID *pvCompletionContext,
                                 BOOL *pfCompletionExpected) = 0; // 2
    virtual HRESULT SendConnectionClose(BOOL fAsync, USHORT uStatusCode, LPCWSTR pszReason,
                                        PFN_WEBSOCKET_COMPLETION pfnCompletion,
                                        VOID *pvCompletionContext,
                                        BOOL *pfCompletionExpected) = 0; // 3
    virtual HRESULT GetCloseStatus(USHORT *pStatusCode, LPCWSTR *ppszReason,
                                   USHORT *pcchReason) = 0; // 4
    virtual VOID CloseTcpConnection() = 0;  // 5
    virtual VOID CancelOutstandingIO() = 0; // 6
};
