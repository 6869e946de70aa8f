#include "crew/crew.hpp"

int odr_b() { return crew::message(42).get<int>(); }
