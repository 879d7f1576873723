// IIS native-module ABI: the response (IHttpResponse).
//
// Clean-room declaration written from public facts (Microsoft Learn, TerraFX.Interop.Windows
// [VtblIndex] numbers, dotnet/aspnetcore's MIT httpserv_xp.h); no Microsoft header text copied.
// No overloaded virtual methods: MSVC and g++ order overloads differently in the vtable, so
// every method has its own name at its MSVC slot. Slot numbers are in the comments and are
// checked by iis-glue/tests/vtable_slots.cpp.
#pragma once

#include "types.h"

class IHttpResponse {
public:
    // 0. Microsoft name: GetRawHttpResponse (the const overload).
    virtual const HTTP_RESPONSE *GetRawHttpResponseConst() const = 0;
    // 1. Microsoft name: GetRawHttpResponse.
    virtual HTTP_RESPONSE *GetRawHttpResponse() = 0;
    virtual IHttpCachePolicy *GetCachePolicy() = 0; // 2
    virtual HRESULT SetStatus(USHORT statusCode, PCSTR pszReason, USHORT uSubStatus,
                              HRESULT hrErrorToReport, IAppHostConfigException *pException,
                              BOOL fTrySkipCustomErrors) = 0; // 3
    // 4. Microsoft name: SetHeader (by HTTP_HEADER_ID).
    virtual HRESULT SetHeaderById(HTTP_HEADER_ID ulHeaderIndex, PCSTR pszHeaderValue,
                                  USHORT cchHeaderValue, BOOL fReplace) = 0;
    // 5. Microsoft name: SetHeader (by name).
    virtual HRESULT SetHeaderByName(PCSTR pszHeaderName, PCSTR pszHeaderValue,
                                    USHORT cchHeaderValue, BOOL fReplace) = 0;
    // 6. Microsoft name: DeleteHeader (by HTTP_HEADER_ID).
    virtual HRESULT DeleteHeaderById(HTTP_HEADER_ID ulHeaderIndex) = 0;
    // 7. Microsoft name: DeleteHeader (by name).
    virtual HRESULT DeleteHeaderByName(PCSTR pszHeaderName) = 0;
    // 8. Microsoft name: GetHeader (by HTTP_HEADER_ID).
    virtual PCSTR GetHeaderById(HTTP_HEADER_ID ulHeaderIndex, USHORT *pcchHeaderValue) const = 0;
    // 9. Microsoft name: GetHeader (by name).
    virtual PCSTR GetHeaderByName(PCSTR pszHeaderName, USHORT *pcchHeaderValue) const = 0;
    virtual VOID Clear() = 0;                      // 10
    virtual VOID ClearHeaders() = 0;               // 11
    virtual VOID SetNeedDisconnect() = 0;          // 12
    virtual VOID ResetConnection() = 0;            // 13
    virtual VOID DisableKernelCache(ULONG reason) = 0; // 14
    virtual BOOL GetKernelCacheEnabled() const = 0; // 15
    virtual VOID SuppressHeaders() = 0;            // 16
    virtual BOOL GetHeadersSuppressed() const = 0; // 17
    // 18. With fAsync, completion arrives in CHttpModule::OnAsyncCompletion when
    // *pfCompletionExpected is TRUE.
    virtual HRESULT Flush(BOOL fAsync, BOOL fMoreData, DWORD *pcbSent,
                          BOOL *pfCompletionExpected) = 0;
    virtual HRESULT Redirect(PCSTR pszUrl, BOOL fResetStatusCode,
                             BOOL fIncludeParameters) = 0; // 19
    // 20. The chunk's memory must stay valid until the data is sent (lInsertPosition -1: append).
    virtual HRESULT WriteEntityChunkByReference(HTTP_DATA_CHUNK *pDataChunk,
                                                LONG lInsertPosition) = 0;
    virtual HRESULT WriteEntityChunks(HTTP_DATA_CHUNK *pDataChunks, DWORD nChunks, BOOL fAsync,
                                      BOOL fMoreData, DWORD *pcbSent,
                                      BOOL *pfCompletionExpected) = 0; // 21
    virtual VOID DisableBuffering() = 0; // 22
    virtual VOID GetStatus(USHORT *pStatusCode, USHORT *pSubStatus, PCSTR *ppszReason,
                           USHORT *pcchReason, HRESULT *phrErrorToReport, PCWSTR *ppszModule,
                           DWORD *pdwNotification, IAppHostConfigException **ppException,
                           BOOL *pfTrySkipCustomErrors) = 0; // 23
    virtual HRESULT SetErrorDescription(PCWSTR pszDescription, DWORD cchDescription,
                                        BOOL fHtmlEncode) = 0; // 24
    virtual PCWSTR GetErrorDescription(DWORD *pcchDescription) = 0; // 25
    virtual HRESULT GetHeaderChanges(DWORD dwOldChangeNumber, DWORD *pdwNewChangeNumber,
                                     PCSTR knownHeaderSnapshot[HttpHeaderResponseMaximum],
                                     DWORD *pdwUnknownHeaderSnapshot,
                                     PCSTR **ppUnknownHeaderNameSnapshot,
                                     PCSTR **ppUnknownHeaderValueSnapshot,
                                     DWORD diffedKnownHeaderIndices[HttpHeaderResponseMaximum + 1],
                                     DWORD *pdwDiffedUnknownHeaders,
                                     DWORD **ppDiffedUnknownHeaderIndices) = 0; // 26
    virtual VOID CloseConnection() = 0; // 27
};

// Completion callback of IHttpResponse2's callback-taking writes (httpserv.h's
// PFN_ASYNC_COMPLETION); the glue never passes one.
typedef REQUEST_NOTIFICATION_STATUS (*PFN_ASYNC_COMPLETION)(IHttpContext3 *pHttpContext,
                                                            IHttpCompletionInfo *pCompletionInfo,
                                                            void *pvCompletionContext);

// IIS 10 (Windows 10 / Server 2016). Declared for the slots of IHttpResponse4 only.
class IHttpResponse2 : public IHttpResponse {
public:
    // 28. Microsoft name: WriteEntityChunks (with a completion callback).
    virtual HRESULT WriteEntityChunksWithCallback(HTTP_DATA_CHUNK *pDataChunks, DWORD nChunks,
                                                  BOOL fAsync, BOOL fMoreData,
                                                  PFN_ASYNC_COMPLETION pfnCompletionCallback,
                                                  void *pvCompletionContext, DWORD *pcbSent,
                                                  BOOL *pfCompletionExpected) = 0;
    // 29. Microsoft name: Flush (with a completion callback).
    virtual HRESULT FlushWithCallback(BOOL fAsync, BOOL fMoreData,
                                      PFN_ASYNC_COMPLETION pfnCompletionCallback,
                                      void *pvCompletionContext, DWORD *pcbSent,
                                      BOOL *pfCompletionExpected) = 0;
};

class IHttpResponse3 : public IHttpResponse2 {
public:
    virtual HRESULT PushPromise(PCSTR pszVerb, PCWSTR pwszPath, PCWSTR pwszQuery, DWORD cHeaders,
                                PCSTR *rgHeaderNames, PCSTR *rgHeaderValues) = 0; // 30
};

// HTTP/2 trailers and stream resets: IIS on Windows Server 2022 / Windows 10 20H2 and later.
// Obtained with IHttpServer2::GetExtendedInterfaceByGuid(IID_IHttpResponse, response,
// IID_IHttpResponse4, &r4), which fails where IIS lacks it (ASP.NET Core's in-process server
// detects trailer support the same way, with httpserv.h's HttpGetExtendedInterface).
class IHttpResponse4 : public IHttpResponse3 {
public:
    virtual HRESULT DeleteTrailer(PCSTR pszHeaderName) = 0;                        // 31
    virtual PCSTR GetTrailer(PCSTR pszHeaderName, USHORT *pcchHeaderValue) = 0;    // 32
    // 33. Resets the request's HTTP/2 stream with an HTTP/2 error code.
    virtual VOID ResetStream(ULONG errorCode) = 0;
    virtual VOID SetNeedGoAway() = 0; // 34
    // 35. Adds (fReplace FALSE) or replaces a response trailer; sent after the last body data.
    virtual HRESULT SetTrailer(PCSTR pszHeaderName, PCSTR pszHeaderValue, USHORT cchHeaderValue,
                               BOOL fReplace) = 0;
};
