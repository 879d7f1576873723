// Header hygiene: ancm.hpp (and so ancm.h) included twice, compiled as C++17 with every warning.
#include "ancm.hpp"
#include "ancm.hpp"

int main() {
    ancm::Status s;
    return s.ok() ? 0 : 1;
}
