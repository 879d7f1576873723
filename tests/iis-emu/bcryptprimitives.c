/* Test-harness shim for Wine 8, which lacks bcryptprimitives.dll: Rust's std (1.78+) imports
 * ProcessPrng from it, and a Rust DLL or EXE then fails to load with error 126. Built next to
 * the test executables only; never shipped with the module (real Windows has the DLL). */
#include <windows.h>

/* advapi32's RtlGenRandom, exported as SystemFunction036. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* RtlGenRandom takes a ULONG length: feed large requests in pieces. */
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) {
            return FALSE;
        }
        data += n;
        len -= n;
    }
    return TRUE;
}
