// RegisterModule, the module factory, the per-request module and the global module.
//
// PLACEHOLDER (issue 6, first slice): the request handler does not forward anything yet. It
// answers a fixed diagnostic response (200, text/plain, the app's processPath and arguments)
// through IHttpResponse, which proves the vtable calls, the configuration path and the
// PENDING → PostCompletion → OnAsyncCompletion cycle. It is to be replaced by the engine's C
// ABI (include/ancm.hpp): build the request head from IIS, hand it to the engine, return
// PENDING, and translate the engine's callbacks into ReadEntityBody / SetStatus + SetHeader /
// WriteEntityChunks + Flush.

#include "glue.h"

#include <new>
#include <string>

namespace ancm {
namespace {

HTTP_MODULE_ID g_moduleId = nullptr;
IHttpServer *g_server = nullptr;

const char kPlaceholderHeader[] = "X-Ancm-Rs";
const char kPlaceholderValue[] = "placeholder; request forwarding through the engine is not wired yet";

// One per request, placed by IIS's IModuleAllocator (IIS owns the memory).
class RequestModule final : public CHttpModule {
public:
    RequestModule() {}

    REQUEST_NOTIFICATION_STATUS OnExecuteRequestHandler(IHttpContext *ctx,
                                                        IHttpEventProvider *provider) override
    {
        try {
            return Execute(ctx, provider);
        } catch (...) {
            // Most likely bad_alloc. Nothing may escape into IIS; fail this request only.
            if (provider != nullptr) {
                provider->SetErrorStatus(E_UNEXPECTED);
            }
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
    }

    // The glue's PostCompletion(0) lands here on an IIS thread: the request is done.
    REQUEST_NOTIFICATION_STATUS OnAsyncCompletion(IHttpContext *, DWORD, BOOL,
                                                  IHttpEventProvider *,
                                                  IHttpCompletionInfo *) override
    {
        return RQ_NOTIFICATION_CONTINUE;
    }

    // The memory belongs to IModuleAllocator: destroy, never free.
    VOID Dispose() override { this->~RequestModule(); }
    static void operator delete(void *) {}

private:
    REQUEST_NOTIFICATION_STATUS Execute(IHttpContext *ctx, IHttpEventProvider *provider)
    {
        IHttpApplication *app = ctx->GetApplication();
        IHttpRequest *request = ctx->GetRequest();
        IHttpResponse *response = ctx->GetResponse();
        if (app == nullptr || request == nullptr || response == nullptr) {
            provider->SetErrorStatus(E_POINTER);
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
        PCWSTR configPath = app->GetAppConfigPath();
        AppSettings settings;
        HRESULT hr = GetCachedAppSettings(g_server, configPath, settings);
        if (FAILED(hr)) {
            // 500.19 is IIS's "configuration data is invalid" status, as ANCM uses it.
            Trace(L"cannot read system.webServer/aspNetCore");
            response->SetStatus(500, "Internal Server Error", 19, hr, nullptr, TRUE);
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }

        const HTTP_REQUEST *raw = request->GetRawHttpRequest();
        std::string url;
        if (raw != nullptr && raw->pRawUrl != nullptr) {
            url.assign(raw->pRawUrl, raw->RawUrlLength);
        }
        PCSTR method = request->GetHttpMethod();

        body_ = "ancm-rs IIS module: PLACEHOLDER response (request forwarding through the "
                "engine's C ABI is not wired yet)\n";
        body_ += "method: ";
        body_ += method != nullptr ? method : "";
        body_ += "\nraw-url: " + url;
        body_ += "\napp-config-path: " + ToUtf8(configPath != nullptr ? configPath : L"");
        body_ += "\nprocessPath: " + ToUtf8(settings.processPath);
        body_ += "\narguments: " + ToUtf8(settings.arguments);
        body_ += "\n";

        hr = response->SetStatus(200, "OK", 0, S_OK, nullptr, TRUE);
        if (SUCCEEDED(hr)) {
            static const char type[] = "text/plain; charset=utf-8";
            hr = response->SetHeaderByName("Content-Type", type, sizeof type - 1, TRUE);
        }
        if (SUCCEEDED(hr)) {
            hr = response->SetHeaderByName(kPlaceholderHeader, kPlaceholderValue,
                                           sizeof kPlaceholderValue - 1, TRUE);
        }
        if (SUCCEEDED(hr)) {
            // body_ lives in the module until Dispose, so the chunk stays valid however IIS
            // sends it.
            HTTP_DATA_CHUNK chunk;
            ZeroMemory(&chunk, sizeof chunk);
            chunk.DataChunkType = HttpDataChunkFromMemory;
            chunk.FromMemory.pBuffer = &body_[0];
            chunk.FromMemory.BufferLength = static_cast<ULONG>(body_.size());
            DWORD sent = 0;
            BOOL completionExpected = FALSE;
            hr = response->WriteEntityChunks(&chunk, 1, FALSE, FALSE, &sent, &completionExpected);
        }
        if (FAILED(hr)) {
            provider->SetErrorStatus(hr);
            return RQ_NOTIFICATION_FINISH_REQUEST;
        }
        // The real handler returns PENDING and finishes from the engine's thread with
        // PostCompletion(0); do the same so the cycle is exercised now.
        hr = ctx->PostCompletion(0);
        if (FAILED(hr)) {
            return RQ_NOTIFICATION_CONTINUE;
        }
        return RQ_NOTIFICATION_PENDING;
    }

    std::string body_;
};

class ModuleFactory final : public IHttpModuleFactory {
public:
    HRESULT GetHttpModule(CHttpModule **ppModule, IModuleAllocator *pAllocator) override
    {
        if (ppModule == nullptr || pAllocator == nullptr) {
            return E_INVALIDARG;
        }
        *ppModule = nullptr;
        void *mem = pAllocator->AllocateMemory(sizeof(RequestModule));
        if (mem == nullptr) {
            return E_OUTOFMEMORY;
        }
        try {
            *ppModule = new (mem) RequestModule();
        } catch (...) {
            return E_OUTOFMEMORY;
        }
        return S_OK;
    }

    VOID Terminate() override { delete this; }
};

class GlobalModule final : public CGlobalModule {
public:
    GLOBAL_NOTIFICATION_STATUS OnGlobalConfigurationChange(
        IGlobalConfigurationChangeProvider *provider) override
    {
        // Drop what was read under the changed path; the next request reads it again. (With
        // the engine: also shut that app down, as ANCM does.)
        if (provider != nullptr) {
            ForgetAppSettingsUnder(provider->GetChangePath());
        }
        return GL_NOTIFICATION_CONTINUE;
    }

    GLOBAL_NOTIFICATION_STATUS OnGlobalStopListening(IGlobalStopListeningProvider *) override
    {
        // The worker process stops taking requests (recycle). Pending: tell the engine to
        // start shutting the apps down.
        Trace(L"stop listening");
        return GL_NOTIFICATION_CONTINUE;
    }

    GLOBAL_NOTIFICATION_STATUS OnGlobalApplicationStop(IHttpApplicationStopProvider *provider) override
    {
        if (provider != nullptr) {
            IHttpApplication *app = provider->GetApplication();
            if (app != nullptr) {
                ForgetAppSettings(app->GetAppConfigPath());
            }
        }
        return GL_NOTIFICATION_CONTINUE;
    }

    VOID Terminate() override { delete this; }
};

} // namespace
} // namespace ancm

// Called by the Rust export RegisterModule (src/lib.rs).
extern "C" HRESULT WINAPI ancm_glue_register_module(DWORD serverVersion,
                                                     IHttpModuleRegistrationInfo *moduleInfo,
                                                     IHttpServer *server)
{
    (void)serverVersion; // IIS 7+ all provide what the glue uses
    try {
        if (moduleInfo == nullptr || server == nullptr) {
            return E_INVALIDARG;
        }
        ancm::g_moduleId = moduleInfo->GetId();
        ancm::g_server = server;

        ancm::ModuleFactory *factory = new (std::nothrow) ancm::ModuleFactory();
        if (factory == nullptr) {
            return E_OUTOFMEMORY;
        }
        HRESULT hr = moduleInfo->SetRequestNotifications(factory, RQ_EXECUTE_REQUEST_HANDLER, 0);
        if (FAILED(hr)) {
            delete factory; // IIS took no ownership
            return hr;
        }
        ancm::GlobalModule *global = new (std::nothrow) ancm::GlobalModule();
        if (global == nullptr) {
            return E_OUTOFMEMORY;
        }
        hr = moduleInfo->SetGlobalNotifications(
            global, GL_CONFIGURATION_CHANGE | GL_STOP_LISTENING | GL_APPLICATION_STOP);
        if (FAILED(hr)) {
            delete global;
            return hr;
        }
        return S_OK;
    } catch (...) {
        return E_UNEXPECTED;
    }
}
