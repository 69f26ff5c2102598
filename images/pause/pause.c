/*
 * verdant-pause: the pod sandbox's process, for nodes that cannot pull registry.k8s.io/pause
 * (verdant-dev and the end-to-end tests load every image from OCI archives). Like upstream's
 * pause it holds the pod's namespaces open, reaps children it inherits as PID 1, and exits 0
 * on SIGINT or SIGTERM. Written in C, as upstream's is, so the image is one static file of a
 * few hundred KiB with no Cargo build behind it.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal) {
  (void)signal;
  _exit(0);
}

static void reap(int signal) {
  (void)signal;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--version") == 0) {
    puts("verdant-pause " VERDANT_VERSION);
    return 0;
  }
  struct sigaction action = {0};
  action.sa_handler = stop;
  if (sigaction(SIGINT, &action, NULL) < 0 || sigaction(SIGTERM, &action, NULL) < 0) {
    perror("verdant-pause: sigaction");
    return 1;
  }
  action.sa_handler = reap;
  action.sa_flags = SA_NOCLDSTOP;
  if (sigaction(SIGCHLD, &action, NULL) < 0) {
    perror("verdant-pause: sigaction");
    return 1;
  }
  for (;;) {
    pause();
  }
}
