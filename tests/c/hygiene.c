/* Header hygiene: ancm.h included twice, compiled as C11 and as C++17 with every warning. */
#include "ancm.h"
#include "ancm.h"

int main(void) {
    ancm_slice s = {0, 0};
    return (int)s.len + (ANCM_VERSION_MAJOR * 0) + (ANCM_RESULT_OK);
}
