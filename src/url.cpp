#include "crew/url.hpp"
