// The test app of the Windows workflow (.github/workflows/windows.yml): an ordinary ASP.NET Core
// app (Kestrel behind IIS through the module, out of process) with the endpoints the acceptance
// script (tests/iis-real/acceptance.py) calls. It reads the pairing token, the port and the
// Windows user through ASP.NET Core's own IIS integration (UseIISIntegration, on by default in
// WebApplication.CreateBuilder when ASPNETCORE_PORT and ASPNETCORE_TOKEN are set), as any app would.

using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Http.Features;

var builder = WebApplication.CreateBuilder(args);
// The 100 MiB upload: Kestrel's own body limit (30,000,000 bytes) would refuse it.
builder.WebHost.ConfigureKestrel(o => o.Limits.MaxRequestBodySize = null);
var app = builder.Build();
app.UseWebSockets();

var started = DateTimeOffset.UtcNow;
// The first request this process received: the Application Initialization check wants to know
// whether IIS's warm-up request (not the script) started the process.
object? firstRequest = null;
var firstLock = new object();
app.Use(async (ctx, next) =>
{
    lock (firstLock)
    {
        firstRequest ??= new
        {
            path = ctx.Request.Path.Value,
            userAgent = ctx.Request.Headers.UserAgent.ToString(),
            fromScript = ctx.Request.Headers.ContainsKey("X-Acceptance"),
        };
    }
    await next();
});

// Streams waiting for the client to say it has seen their first chunk (/stream).
var releases = new ConcurrentDictionary<string, TaskCompletionSource>();

static Dictionary<string, string?> Environment_(params string[] prefixes) =>
    Environment.GetEnvironmentVariables()
        .Cast<System.Collections.DictionaryEntry>()
        .Select(e => (Key: (string)e.Key, Value: (string?)e.Value))
        .Where(e => prefixes.Any(p => e.Key.StartsWith(p, StringComparison.OrdinalIgnoreCase)))
        // The token's value stays in the process; only whether it is set is reported.
        .ToDictionary(e => e.Key.ToUpperInvariant(),
            e => e.Key.Equals("ASPNETCORE_TOKEN", StringComparison.OrdinalIgnoreCase) ? "(set)" : e.Value);

app.MapGet("/", () => "ancm-rs test app");

// What arrived: method, the target as forwarded, headers, the IIS-related environment, the
// client as ASP.NET Core's forwarded-headers handling sees it, the Windows user.
app.MapGet("/echo", (HttpContext ctx) =>
{
    var token = Environment.GetEnvironmentVariable("ASPNETCORE_TOKEN");
    var sent = ctx.Request.Headers["MS-ASPNETCORE-TOKEN"].ToString();
    return Results.Json(new
    {
        pid = Environment.ProcessId,
        started,
        method = ctx.Request.Method,
        rawTarget = ctx.Features.Get<IHttpRequestFeature>()?.RawTarget,
        path = ctx.Request.Path.Value,
        headers = ctx.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString()),
        env = Environment_("ASPNETCORE_", "ANCMTEST_"),
        // IIS integration has already refused any request whose token differs from the
        // process's; this says that the one it accepted carried exactly the process's token.
        tokenMatches = token is not null && sent == token,
        remoteIp = ctx.Connection.RemoteIpAddress?.ToString(),
        scheme = ctx.Request.Scheme,
        user = ctx.User.Identity?.Name,
        authType = ctx.User.Identity?.AuthenticationType,
    });
});

app.MapGet("/first", () => Results.Json(new { pid = Environment.ProcessId, first = firstRequest }));

// Hashes the body as it streams in (never held whole).
app.MapPost("/upload", async (HttpContext ctx) =>
{
    using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    var buf = new byte[81920];
    long total = 0;
    int n;
    while ((n = await ctx.Request.Body.ReadAsync(buf)) > 0)
    {
        sha.AppendData(buf, 0, n);
        total += n;
    }
    return Results.Json(new { bytes = total, sha256 = Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant() });
});

// `bytes` bytes of a fixed pattern (byte i = i % 251), written in 64 KiB pieces.
app.MapGet("/download", async (HttpContext ctx, long bytes) =>
{
    ctx.Response.ContentType = "application/octet-stream";
    ctx.Response.ContentLength = bytes;
    var block = new byte[251 * 256];
    for (var i = 0; i < block.Length; i++) block[i] = (byte)(i % 251);
    long sent = 0;
    while (sent < bytes)
    {
        var n = (int)Math.Min(block.Length, bytes - sent);
        await ctx.Response.Body.WriteAsync(block.AsMemory(0, n));
        sent += n;
    }
});

// Streaming: writes "first", flushes, then waits (up to 60 s) until the client calls
// /stream/release?id=… — which it can only do once it has received "first" — then writes
// "second". A proxy that held the first chunk back would make this hang, not pass.
// With crashAfterFirst=true the process dies instead: a failure after the head was sent.
app.MapGet("/stream", async (HttpContext ctx, string id, bool? crashAfterFirst) =>
{
    var tcs = releases.GetOrAdd(id, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
    ctx.Response.ContentType = "text/plain";
    await ctx.Response.WriteAsync("first\n");
    await ctx.Response.Body.FlushAsync();
    if (crashAfterFirst == true)
    {
        await Task.Delay(200);
        Environment.FailFast("acceptance: crash after the response head");
    }
    await tcs.Task.WaitAsync(TimeSpan.FromSeconds(60));
    await ctx.Response.WriteAsync("second\n");
    releases.TryRemove(id, out _);
});
app.MapGet("/stream/release", (string id) =>
{
    releases.GetOrAdd(id, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    return "released";
});

// A request that takes `ms` milliseconds (the recycle-under-load check keeps some in flight).
app.MapGet("/slow", async (int ms) =>
{
    await Task.Delay(ms);
    return Results.Json(new { pid = Environment.ProcessId });
});

// The process exits while a request is in flight: that request gets the module's 502.3.
// FailFast, not Exit: Exit would first wait for the host to drain this very request.
app.MapGet("/crash", () =>
{
    Environment.FailFast("acceptance: crash endpoint");
});

// WebSocket echo: every message back as received (text or binary), until the client closes.
app.Map("/ws", async (HttpContext ctx) =>
{
    if (!ctx.WebSockets.IsWebSocketRequest)
    {
        ctx.Response.StatusCode = 400;
        return;
    }
    using var ws = await ctx.WebSockets.AcceptWebSocketAsync();
    var buf = new byte[1 << 16];
    var message = new MemoryStream();
    while (true)
    {
        // ArraySegment: the Memory<byte> overload's result has no close status (and a byte[]
        // argument would be ambiguous between the two).
        var r = await ws.ReceiveAsync(new ArraySegment<byte>(buf), CancellationToken.None);
        if (r.MessageType == WebSocketMessageType.Close)
        {
            await ws.CloseAsync(r.CloseStatus ?? WebSocketCloseStatus.NormalClosure, r.CloseStatusDescription, CancellationToken.None);
            return;
        }
        message.Write(buf, 0, r.Count);
        if (r.EndOfMessage)
        {
            await ws.SendAsync(new ArraySegment<byte>(message.ToArray()), r.MessageType, true, CancellationToken.None);
            message.SetLength(0);
        }
    }
});

app.Run();
