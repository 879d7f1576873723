// IIS native-module ABI: the configuration (ahadmin.h) COM interfaces the module reads
// (IAppHostAdminManager from IHttpServer::GetAdminManager, sections, elements, properties,
// collections).
//
// Clean-room declaration written from public facts: slot numbers and signatures from
// TerraFX.Interop.Windows' um/ahadmin/*.cs [VtblIndex] bindings (ported from the Windows SDK
// 10.0.26100 ahadmin.h), IIDs from the same and cross-checked with Silk.NET; no Microsoft header
// text copied. These are COM interfaces: they derive from IUnknown (slots 0-2: QueryInterface,
// AddRef, Release), use STDMETHODCALLTYPE, and every returned interface must be Released.
// No overloaded virtual methods (MSVC and g++ order overloads differently); Microsoft declares
// none here either. Slot numbers are in the comments and are checked by
// iis-glue/tests/vtable_slots.cpp.
#pragma once

#include "types.h"

class IAppHostAdminManager : public IUnknown {
public:
    // 3: e.g. (L"system.webServer/aspNetCore", IHttpApplication::GetAppConfigPath()).
    virtual HRESULT STDMETHODCALLTYPE GetAdminSection(BSTR bstrSectionName, BSTR bstrPath,
                                                      IAppHostElement **ppAdminSection) = 0;
    virtual HRESULT STDMETHODCALLTYPE GetMetadata(BSTR bstrMetadataType, VARIANT *pValue) = 0; // 4
    virtual HRESULT STDMETHODCALLTYPE SetMetadata(BSTR bstrMetadataType, VARIANT value) = 0;   // 5
    virtual HRESULT STDMETHODCALLTYPE get_ConfigManager(
        IAppHostConfigManager **ppConfigManager) = 0; // 6
};

class IAppHostElement : public IUnknown {
public:
    virtual HRESULT STDMETHODCALLTYPE get_Name(BSTR *pbstrName) = 0; // 3
    // 4: the element's own collection (e.g. the <add> entries of environmentVariables).
    virtual HRESULT STDMETHODCALLTYPE get_Collection(IAppHostElementCollection **ppCollection) = 0;
    virtual HRESULT STDMETHODCALLTYPE get_Properties(
        IAppHostPropertyCollection **ppProperties) = 0; // 5
    virtual HRESULT STDMETHODCALLTYPE get_ChildElements(
        IAppHostChildElementCollection **ppElements) = 0; // 6
    virtual HRESULT STDMETHODCALLTYPE GetMetadata(BSTR bstrMetadataType, VARIANT *pValue) = 0; // 7
    virtual HRESULT STDMETHODCALLTYPE SetMetadata(BSTR bstrMetadataType, VARIANT value) = 0;   // 8
    virtual HRESULT STDMETHODCALLTYPE get_Schema(IAppHostElementSchema **ppSchema) = 0;        // 9
    virtual HRESULT STDMETHODCALLTYPE GetElementByName(BSTR bstrSubName,
                                                       IAppHostElement **ppElement) = 0; // 10
    virtual HRESULT STDMETHODCALLTYPE GetPropertyByName(BSTR bstrSubName,
                                                        IAppHostProperty **ppProperty) = 0; // 11
    virtual HRESULT STDMETHODCALLTYPE Clear() = 0; // 12
    virtual HRESULT STDMETHODCALLTYPE get_Methods(IAppHostMethodCollection **ppMethods) = 0; // 13
};

class IAppHostProperty : public IUnknown {
public:
    virtual HRESULT STDMETHODCALLTYPE get_Name(BSTR *pbstrName) = 0; // 3
    // 4: the caller owns *pVariant (VariantClear it).
    virtual HRESULT STDMETHODCALLTYPE get_Value(VARIANT *pVariant) = 0;
    virtual HRESULT STDMETHODCALLTYPE put_Value(VARIANT value) = 0;         // 5
    virtual HRESULT STDMETHODCALLTYPE Clear() = 0;                          // 6
    virtual HRESULT STDMETHODCALLTYPE get_StringValue(BSTR *pbstrValue) = 0; // 7
    virtual HRESULT STDMETHODCALLTYPE get_Exception(
        IAppHostPropertyException **ppException) = 0; // 8
    virtual HRESULT STDMETHODCALLTYPE GetMetadata(BSTR bstrMetadataType, VARIANT *pValue) = 0; // 9
    virtual HRESULT STDMETHODCALLTYPE SetMetadata(BSTR bstrMetadataType, VARIANT value) = 0; // 10
    virtual HRESULT STDMETHODCALLTYPE get_Schema(IAppHostPropertySchema **ppSchema) = 0;     // 11
};

class IAppHostPropertyCollection : public IUnknown {
public:
    virtual HRESULT STDMETHODCALLTYPE get_Count(DWORD *pcCount) = 0; // 3
    // 4: cIndex is a VT_UI4/VT_I4 index or a VT_BSTR name.
    virtual HRESULT STDMETHODCALLTYPE get_Item(VARIANT cIndex, IAppHostProperty **ppProperty) = 0;
};

class IAppHostElementCollection : public IUnknown {
public:
    virtual HRESULT STDMETHODCALLTYPE get_Count(DWORD *pcElementCount) = 0; // 3
    // 4: cIndex is a VT_UI4/VT_I4 index.
    virtual HRESULT STDMETHODCALLTYPE get_Item(VARIANT cIndex, IAppHostElement **ppElement) = 0;
    virtual HRESULT STDMETHODCALLTYPE AddElement(IAppHostElement *pElement, INT cPosition) = 0; // 5
    virtual HRESULT STDMETHODCALLTYPE DeleteElement(VARIANT cIndex) = 0;                     // 6
    virtual HRESULT STDMETHODCALLTYPE Clear() = 0;                                           // 7
    virtual HRESULT STDMETHODCALLTYPE CreateNewElement(BSTR bstrElementName,
                                                       IAppHostElement **ppElement) = 0; // 8
    virtual HRESULT STDMETHODCALLTYPE get_Schema(IAppHostCollectionSchema **ppSchema) = 0; // 9
};

// From IAppHostElement::get_ChildElements.
class IAppHostChildElementCollection : public IUnknown {
public:
    virtual HRESULT STDMETHODCALLTYPE get_Count(DWORD *pcCount) = 0; // 3
    virtual HRESULT STDMETHODCALLTYPE get_Item(VARIANT cIndex, IAppHostElement **ppElement) = 0; // 4
};
