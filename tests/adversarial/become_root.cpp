// A stand-in for a setuid-root program a user runs under a lease (su, sudo,
// a vendor's setuid helper): installed setuid root by the test, it takes
// uid 0 for real (real, effective and saved), so the user who started it can
// no longer signal it, and waits to be killed.
#include <unistd.h>

int main(void) {
  if (setresuid(0, 0, 0) != 0) return 1;
  for (;;) pause();
}
