// IIS native-module ABI: notification providers and completion information.
//
// Clean-room declaration written from public facts (Microsoft Learn, TerraFX.Interop.Windows
// [VtblIndex] numbers, dotnet/aspnetcore's MIT httpserv_xp.h); no Microsoft header text copied.
// No overloaded virtual methods: MSVC and g++ order overloads differently in the vtable, so
// every method has its own name at its MSVC slot. Slot numbers are in the comments and are
// checked by iis-glue/tests/vtable_slots.cpp.
#pragma once

#include "types.h"

// The provider passed to most notifications; the specific providers derive from it.
class IHttpEventProvider {
public:
    virtual VOID SetErrorStatus(HRESULT hrError) = 0; // 0
};

// Passed to CHttpModule::OnAsyncCompletion.
class IHttpCompletionInfo {
public:
    virtual DWORD GetCompletionBytes() const = 0;    // 0
    virtual HRESULT GetCompletionStatus() const = 0; // 1
};

// GL_STOP_LISTENING. Slots from httpserv_xp.h's declaration order (single method, no overloads).
class IGlobalStopListeningProvider : public IHttpEventProvider {
public:
    virtual BOOL DrainRequestsGracefully() const = 0; // 1
};

// GL_CONFIGURATION_CHANGE. The path is a configuration path such as MACHINE/WEBROOT/APPHOST/site.
class IGlobalConfigurationChangeProvider : public IHttpEventProvider {
public:
    virtual PCWSTR GetChangePath() const = 0; // 1
};

// GL_APPLICATION_START / GL_APPLICATION_STOP (IHttpApplicationStartProvider and
// IHttpApplicationStopProvider are this type). Slots from httpserv_xp.h's declaration order
// (single method, no overloads) and TerraFX's IHttpApplicationProvider [VtblIndex] numbers.
class IHttpApplicationProvider : public IHttpEventProvider {
public:
    virtual IHttpApplication *GetApplication() = 0; // 1
};
