// IIS native-module ABI: the request (IHttpRequest, IHttpRequest2).
//
// Clean-room declaration written from public facts (Microsoft Learn, TerraFX.Interop.Windows
// [VtblIndex] numbers, dotnet/aspnetcore's MIT httpserv_xp.h); no Microsoft header text copied.
// No overloaded virtual methods: MSVC and g++ order overloads differently in the vtable, so
// every method has its own name at its MSVC slot. Slot numbers are in the comments and are
// checked by iis-glue/tests/vtable_slots.cpp.
#pragma once

#include "types.h"

class IHttpRequest {
public:
    // 0. Microsoft name: GetRawHttpRequest (the const overload).
    virtual const HTTP_REQUEST *GetRawHttpRequestConst() const = 0;
    // 1. The HTTP.sys request: pRawUrl/RawUrlLength as sent, CookedUrl decoded, pSslInfo.
    virtual HTTP_REQUEST *GetRawHttpRequest() = 0;
    // 2. Microsoft name: GetHeader (by HTTP_HEADER_ID).
    virtual PCSTR GetHeaderById(HTTP_HEADER_ID ulHeaderIndex, USHORT *pcchHeaderValue) const = 0;
    // 3. Microsoft name: GetHeader (by name).
    virtual PCSTR GetHeaderByName(PCSTR pszHeaderName, USHORT *pcchHeaderValue) const = 0;
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
    virtual PCSTR GetHttpMethod() const = 0;              // 8
    virtual HRESULT SetHttpMethod(PCSTR pszHttpMethod) = 0; // 9
    // 10. Microsoft name: SetUrl (the PCSTR overload).
    virtual HRESULT SetUrlA(PCSTR pszUrl, DWORD cchUrl, BOOL fResetQueryString) = 0;
    // 11. Microsoft name: SetUrl (the PCWSTR overload).
    virtual HRESULT SetUrlW(PCWSTR pszUrl, DWORD cchUrl, BOOL fResetQueryString) = 0;
    virtual BOOL GetUrlChanged() const = 0;               // 12
    virtual PCWSTR GetForwardedUrl() const = 0;           // 13
    virtual PSOCKADDR GetLocalAddress() const = 0;        // 14
    virtual PSOCKADDR GetRemoteAddress() const = 0;       // 15
    // 16. With fAsync, completion arrives in CHttpModule::OnAsyncCompletion when
    // *pfCompletionPending is TRUE.
    virtual HRESULT ReadEntityBody(VOID *pvBuffer, DWORD cbBuffer, BOOL fAsync,
                                   DWORD *pcbBytesReceived, BOOL *pfCompletionPending) = 0;
    virtual HRESULT InsertEntityBody(VOID *pvBuffer, DWORD cbBuffer) = 0; // 17
    virtual DWORD GetRemainingEntityBytes() = 0;                          // 18
    virtual VOID GetHttpVersion(USHORT *pMajorVersion, USHORT *pMinorVersion) const = 0; // 19
    virtual HRESULT GetClientCertificate(HTTP_SSL_CLIENT_CERT_INFO **ppClientCertInfo,
                                         BOOL *pfClientCertNegotiated) = 0; // 20
    virtual HRESULT NegotiateClientCertificate(BOOL fAsync, BOOL *pfCompletionPending) = 0; // 21
    virtual DWORD GetSiteId() const = 0; // 22
    virtual HRESULT GetHeaderChanges(DWORD dwOldChangeNumber, DWORD *pdwNewChangeNumber,
                                     PCSTR knownHeaderSnapshot[HttpHeaderRequestMaximum],
                                     DWORD *pdwUnknownHeaderSnapshot,
                                     PCSTR **ppUnknownHeaderNameSnapshot,
                                     PCSTR **ppUnknownHeaderValueSnapshot,
                                     DWORD diffedKnownHeaderIndices[HttpHeaderRequestMaximum + 1],
                                     DWORD *pdwDiffedUnknownHeaders,
                                     DWORD **ppDiffedUnknownHeaderIndices) = 0; // 23
};

class IHttpRequest2 : public IHttpRequest {
public:
    virtual HRESULT GetChannelBindingToken(PBYTE *ppToken, DWORD *pTokenSize) = 0; // 24
};
