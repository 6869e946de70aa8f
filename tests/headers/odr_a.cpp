#include "crew/crew.hpp"

int odr_b();

int main() { return odr_b() == 42 && crew::error_name(crew::errc::queue_full) == "ERR_QUEUE_FULL" ? 0 : 1; }
