#include "common/clock.h"

namespace vigil {

const Clock* RealClock::Get() {
  static const RealClock* clock = new RealClock();
  return clock;
}

}  // namespace vigil
