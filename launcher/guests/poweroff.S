/* poweroff: powers off at once, saying nothing. */
#include "common.S"
    PVH_ENTRY
    POWER_OFF
