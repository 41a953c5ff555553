/*
 * The raw_exec task executor: one small native process per task, like Nomad's executor,
 * that outlives the agent. It speaks the sh wrapper's protocol (handle.py) exactly, so
 * the driver waits, signals, re-attaches and releases the same way for both:
 *
 *   argv: <self> --nomadpaas-rawexec <state dir> <command> [args...]
 *   fd 0: the write end of the pipe on which the task is announced ("<pid> <its start
 *         time> <our start time> <our pid>\n", start times as in /proc/<pid>/stat)
 *   fd 1, 2: the task's stdout and stderr (logmon's FIFOs), held open until released
 *
 * The task is started with vfork() (it shares our memory until it execs; see run_task).
 * The child makes its own session (so its PID is its PGID and SID), has default signal
 * dispositions and an empty mask (an agent started with SIGINT ignored must not pass that
 * on: a task must obey its KillSignal; the child restores them when we were started
 * directly, a spawner's executor has them already), writes <state>/task.pid, announces
 * its PID, swaps fd 0 for /dev/null, gives its session's autogroup the task's CPU weight
 * (spawner mode; see cpu_weight.py) and execs the command (a bare name is searched in
 * our environment's $PATH: the task's). The parent waits for it, SIGKILLs what is left of
 * its process group at once (microseconds after reaping the leader, so the PGID cannot
 * have been reused), writes the status (code, or 128+n for signal n) to <state>/task.exit
 * with one write(2) ending in a newline, then blocks opening the <state>/task.ack FIFO
 * until the driver releases it. Anything that fails before the task is announced is
 * announced instead as one line "!<errno> <what>\n" (exit status 127).
 *
 * Spawner mode (spawner.py): `<self> --nomadpaas-rawexec-spawner <padding>`, fd 0 an
 * AF_UNIX SOCK_SEQPACKET socket. The agent starts one per process, so a task start is a
 * fork of this small process instead of a fork of the agent (whose fd table grows with
 * every task) and an exec of a static binary (whose start-up costs more than the rest).
 * Each request is one message of NUL-separated fields
 *
 *   <state dir> <cwd> <command> <autogroup nice, or empty> <argc> <argv[1]>... <NAME=value>...
 *
 * with three fds (SCM_RIGHTS): the announce pipe, the task's stdout and stderr. The
 * spawner forks and does not reply: the announcement (which names the executor too) is
 * the answer, and a request the spawner cannot serve (a failed fork, a malformed or
 * truncated message) is announced on the request's pipe as "!<errno> <what>\n"; the
 * pipe reaching EOF without a line means the spawner died with the request. The agent
 * thus waits once per start, on the pipe, not on a reply and then the pipe. The child is the
 * task's executor, exactly as above: own session, default signals (the spawner restored
 * them all and emptied its mask at its start; the child restores the five it ignores),
 * the three fds as 0, 1 and 2 and no other, its argv area rewritten (setproctitle-style)
 * to the executor argv above so `kill_orphaned_tasks` finds it, then chdir(cwd), the
 * request's environment as its own (as Popen would give it) and the task. Children are
 * reaped by the kernel (SIGCHLD ignored); the spawner exits at EOF (the agent is gone)
 * and its executors keep running: they do not need it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define MARK "--nomadpaas-rawexec"
#define SPAWNER_MARK "--nomadpaas-rawexec-spawner"
/* Largest request (spawner.py REQUEST_MAX_BYTES); bss pages cost nothing until used. */
#define REQUEST_MAX (1 << 20)
#define REQUEST_FDS 3
/* argv fields of a request before the task's arguments: state, cwd, command, nice, argc. */
#define REQUEST_HEAD 5

extern char **environ;

static int path_in(char *out, size_t size, const char *dir, const char *name) {
  int n = snprintf(out, size, "%s/%s", dir, name);
  return n > 0 && (size_t)n < size;
}

/* Before the task is announced, failures are announced instead, on fd 0. No stdio (its
 * FILEs take locks and buffers): this also runs in the task's vfork child. */
static void fail(int err, const char *what) {
  char head[24];
  int n = snprintf(head, sizeof head, "!%d ", err);
  struct iovec line[] = {{head, (size_t)n}, {(char *)what, strlen(what)}, {"\n", 1}};
  (void)!writev(0, line, 3);
  _exit(127);
}

static int write_line(const char *path, long value, int flags) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%ld\n", value);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | flags, 0666);
  if (fd < 0) return -1;
  int ok = write(fd, buf, (size_t)n) == n;
  close(fd);
  return ok ? 0 : -1;
}

static void default_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &sa, NULL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Field 22 of /proc/self/stat (start time in clock ticks); 0 when unreadable. */
static long long self_start_time(void) {
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
  if (p == NULL || p[1] == '\0') return 0;
  p += 2; /* field 3 */
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (p == NULL) return 0;
    p++;
  }
  return strtoll(p, NULL, 10);
}

/* What the task's child needs; it only reads this (it shares our memory until exec). */
struct task {
  const char *state;
  char **command;
  long long executor_start;
  pid_t executor_pid;
  int null_fd;       /* /dev/null, close-on-exec; -1 when it could not be opened */
  int reset_signals; /* whether our own dispositions and mask may not be the defaults */
  const char *nice;  /* the autogroup nice value to set ("-20".."19"), or NULL */
};

/* Our session's autogroup gets the task's CPU weight; best effort (no autogroups, no
 * privilege for a negative value, the kernel's rate limit for unprivileged callers). */
static void set_autogroup_nice(const char *nice) {
  int fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)!write(fd, nice, strlen(nice));
  close(fd);
}

/* The task, in the child of vfork(): own session, write task.pid, announce, CPU weight,
 * exec. Until it execs or exits it runs in our memory, on our stack below our frames,
 * while we are suspended, so it leaves nothing behind that we could trip over: it writes
 * only its own frames and errno, and allocates nothing (no malloc, no stdio FILE;
 * snprintf fills its buffer only); strerror, after a failed exec, takes gettext's lock,
 * which we never take.
 * Its fd table and signal dispositions are its own (vfork shares neither), and there are
 * no signal handlers that could run in it.
 * The announcement is "<pid> <start time> <executor's start time> <executor's pid>\n":
 * the driver records both start times (PID reuse checks) without reading /proc itself,
 * and learns the executor's PID (a spawner's executor is not the agent's child). */
static __attribute__((noreturn, noinline)) void run_task(const struct task *t) {
  char path[4096];
  pid_t self = setsid(); /* our PID: we are no group leader, so it cannot fail */
  if (self < 0) self = getpid();
  if (t->reset_signals) default_signals();
  if (!path_in(path, sizeof path, t->state, "task.pid")) fail(ENAMETOOLONG, t->state);
  if (write_line(path, self, 0) < 0) fail(errno, path);
  char buf[80];
  int n = snprintf(buf, sizeof buf, "%ld %lld %lld %ld\n", (long)self, self_start_time(),
                   t->executor_start, (long)t->executor_pid);
  if (write(0, buf, (size_t)n) != n) _exit(127);
  if (t->null_fd >= 0) dup2(t->null_fd, 0); /* dup2 clears close-on-exec on fd 0 */
  /* After the announcement: the agent's wait does not pay for it; before the exec: the
   * task's start-up already runs at its weight. */
  if (t->nice != NULL) set_autogroup_nice(t->nice);
  char **command = t->command;
  /* execvp searches the $PATH of our environment: the task's (executor() set it in
   * spawner mode, Popen gave it otherwise). */
  if (strchr(command[0], '/')) {
    execv(command[0], command);
  } else {
    execvp(command[0], command);
  }
  int err = errno;
  const char *why = strerror(err);
  struct iovec line[] = {
      {command[0], strlen(command[0])}, {": ", 2}, {(char *)why, strlen(why)}, {"\n", 1}};
  (void)!writev(2, line, 4);
  _exit(err == ENOENT ? 127 : 126);
}

/* vfork(), not fork(): the task execs at once, so copying our address space (page tables,
 * then copy-on-write faults in both processes, then the copy's teardown at exec) is waste.
 * A function of its own: in this frame the child only reads t, then run_task never
 * returns, so the frames we return through stay as they were. */
static __attribute__((noinline)) pid_t start_task(const struct task *t) {
  pid_t pid = vfork();
  if (pid == 0) run_task(t);
  return pid;
}

/* Start the task, wait for it, record its status, wait to be released. reset_signals: our
 * signal dispositions and mask are whatever our starter left (main); the spawner's forked
 * executors have the defaults already. */
static int supervise(const char *state, char **command, int reset_signals, const char *nice) {
  struct task t = {state, command, self_start_time(), getpid(), -1, reset_signals, nice};
  /* One /dev/null for both: the child's stdin, then ours. */
  t.null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = start_task(&t);
  if (pid < 0) fail(errno, "fork");
  /* The announcement is the child's: never hold the pipe open. */
  if (t.null_fd >= 0) {
    dup2(t.null_fd, 0);
    close(t.null_fd);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  kill(-pid, SIGKILL);
  long rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  char path[4096];
  if (path_in(path, sizeof path, state, "task.exit")) write_line(path, rc, 0);
  if (path_in(path, sizeof path, state, "task.ack")) {
    int fd;
    while ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 && errno == EINTR) {
    }
    if (fd >= 0) close(fd);
  }
  return 0;
}

/* -- spawner mode ----------------------------------------------------------------------- */

static char request[REQUEST_MAX + 1];
static char self_path[4096];
/* The argv area [title, title_end): what /proc/<pid>/cmdline shows. */
static char *title, *title_end;

/* Rewrite the argv area to "<self>\0" MARK "\0<state>\0<command...>", cut to fit and
 * NUL-filled; its last byte stays NUL, so the kernel shows exactly this area. */
static void set_title(const char *state, char **command) {
  size_t room = (size_t)(title_end - title) - 1;
  memset(title, 0, room);
  char *p = title;
  const char *head[] = {self_path, MARK, state};
  for (int i = 0; i < 3 + 1024; i++) {
    const char *part = i < 3 ? head[i] : command[i - 3];
    if (part == NULL) break;
    size_t len = strlen(part) + 1;
    size_t left = room - (size_t)(p - title);
    if (len > left) len = left;
    memcpy(p, part, len);
    p += len;
    if (p - title >= (ptrdiff_t)room) break;
  }
}

static void close_from(int lowest) {
  if (close_range((unsigned)lowest, ~0U, 0) == 0) return;
  long max = sysconf(_SC_OPEN_MAX);
  for (long fd = lowest; fd < (max > 0 && max < 65536 ? max : 65536); fd++) close((int)fd);
}

/* The forked child: becomes the executor of the task the request describes. */
static void executor(char *req, size_t len, const int fds[REQUEST_FDS]) {
  /* What the spawner set for itself; SIGCHLD first: ignored, our waitpid() would fail. */
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGQUIT, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  setsid();
  for (int i = 0; i < REQUEST_FDS; i++) dup2(fds[i], i); /* fds[i] >= 3: 0-2 are taken */
  close_from(REQUEST_FDS); /* the spawner's socket went with dup2 onto 0 */
  size_t count = 0;
  for (size_t i = 0; i <= len; i++) count += req[i] == '\0';
  char **fields = malloc((count + 1) * sizeof *fields);
  if (fields == NULL) fail(ENOMEM, "request");
  char *p = req;
  for (size_t i = 0; i < count; i++) {
    fields[i] = p;
    p += strlen(p) + 1;
  }
  char *end = NULL;
  long argc = count >= REQUEST_HEAD ? strtol(fields[4], &end, 10) : -1;
  if (argc < 0 || end == NULL || *end != '\0' || (size_t)argc > count - REQUEST_HEAD) {
    fail(EINVAL, "malformed spawner request");
  }
  const char *nice = fields[3][0] != '\0' ? fields[3] : NULL;
  /* argv = command, args... NULL: the argc field's slot takes the command. */
  char **argv = fields + 4;
  argv[0] = fields[2];
  char **envp = malloc((count - REQUEST_HEAD - (size_t)argc + 1) * sizeof *envp);
  if (envp == NULL) fail(ENOMEM, "request");
  size_t n = 0;
  for (size_t i = REQUEST_HEAD + (size_t)argc; i < count; i++) envp[n++] = fields[i];
  envp[n] = NULL;
  argv[argc + 1] = NULL; /* the first env field's pointer (copied above), or the spare */
  set_title(fields[0], argv);
  if (chdir(fields[1]) < 0) fail(errno, fields[1]);
  environ = envp; /* ours, as Popen gives it in direct mode: the task inherits it */
  _exit(supervise(fields[0], argv, 0, nice));
}

static int spawner(int argc, char **argv) {
  int type = 0;
  socklen_t size = sizeof type;
  if (getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &size) < 0 || type != SOCK_SEQPACKET) {
    dprintf(2, "%s: fd 0 must be a SOCK_SEQPACKET socket\n", argv[0]);
    return 2;
  }
  for (int fd = 1; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) return 2; /* fds >= 3 */
  }
  title = argv[0];
  title_end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
  if ((size_t)snprintf(self_path, sizeof self_path, "%s", argv[0]) >= sizeof self_path) return 2;
  memset(argv[2], 0, strlen(argv[2])); /* ps shows "<self> --nomadpaas-rawexec-spawner" */
  default_signals(); /* what the agent ignored, and Python's SIGPIPE */
  signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel: no zombies, no wait */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, SIG_IGN); /* own session already; a stray ^C must not cost a restart */
  signal(SIGQUIT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  for (;;) {
    union {
      char buf[CMSG_SPACE(sizeof(int) * REQUEST_FDS)];
      struct cmsghdr align;
    } control;
    struct iovec iov = {request, REQUEST_MAX};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t len = recvmsg(0, &msg, MSG_CMSG_CLOEXEC);
    if (len == 0) return 0; /* the agent is gone */
    if (len < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    int fds[REQUEST_FDS];
    int nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < n; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (nfds < REQUEST_FDS) {
          fds[nfds++] = fd;
        } else {
          close(fd);
        }
      }
    }
    int err = 0;
    const char *what = "spawner request";
    if (msg.msg_flags & MSG_TRUNC) {
      err = E2BIG;
    } else if (nfds != REQUEST_FDS || msg.msg_flags & MSG_CTRUNC) {
      err = EINVAL;
    } else {
      request[len] = '\0';
      pid_t pid = fork();
      if (pid == 0) executor(request, (size_t)len, fds);
      if (pid < 0) {
        err = errno;
        what = "fork";
      }
    }
    /* No reply: the executor announces the task. What failed here is announced instead
     * (without an announce pipe the agent sees EOF: the start fails either way). */
    if (err != 0 && nfds > 0) dprintf(fds[0], "!%d %s\n", err, what);
    for (int i = 0; i < nfds; i++) close(fds[i]);
  }
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], SPAWNER_MARK) == 0) return spawner(argc, argv);
  if (argc < 4 || strcmp(argv[1], MARK) != 0) {
    dprintf(2, "usage: %s " MARK " STATE_DIR COMMAND [ARGS...]\n", argv[0]);
    return 2;
  }
  return supervise(argv[2], argv + 3, 1, NULL);
}
