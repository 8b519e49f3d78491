/*
 * splice-relay: the least a userspace TCP relay can do, as a reference for the bench.
 *
 * bench/paired.sh runs it beside rvs as PAIRED_PEERS=splice-relay to answer one question: how
 * close to "direct" (no balancer) can any relay that terminates both TCP connections come on
 * this machine? It does nothing but the work every such relay must do: accept, connect to the
 * next real server (round robin), and move bytes socket -> pipe -> socket with splice(2) in
 * both directions until both have ended. No scheduling, no accounting, no timeouts, no
 * logging, no limits; a failed connect or a reset just closes both sockets. Not a balancer:
 * only a floor to measure balancers against.
 *
 * With RELAY_COPY=1 in its environment it copies instead (bench/paired.sh's copy-relay): recv
 * into a 16 KiB buffer per direction and send from it, the floor for small messages.
 *
 * usage: [RELAY_COPY=1] splice-relay THREADS LISTEN_PORT SERVER_PORT... (all on 127.0.0.1)
 * Each thread has a listener of its own (SO_REUSEPORT) and an epoll set of its own, as rvs's
 * workers do; sockets are edge-triggered, every call non-blocking.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_BYTES (64 << 10) /* as rvs (rvs-proxy's pipe::PIPE_PAGES, 16 pages of 4 KiB) */
#define MAX_SERVERS 16
#define COPY_BYTES (16 << 10) /* copy mode: a buffer per direction, as HAProxy's bufsize */

static int copy_mode; /* RELAY_COPY=1: recv/send through a buffer instead of splice */

struct half {
	int from, to;
	int pipe[2];
	size_t queued; /* bytes in the pipe (copy mode: in buf, from off on) */
	size_t off;    /* copy mode: where the unsent bytes of buf start */
	char *buf;     /* copy mode: COPY_BYTES of its own */
	int eof;       /* the source sent FIN */
	int shut;      /* the destination was sent FIN */
};

struct conn {
	int fd[2]; /* client, server */
	struct half half[2]; /* client -> server, server -> client */
	struct conn *next_dead;
	int dead;
};

static struct sockaddr_in servers[MAX_SERVERS];
static int nservers;
static int listen_port;

/* The source has ended: pass the FIN on once. */
static int finish(struct half *h)
{
	if (!h->shut) {
		h->shut = 1;
		if (shutdown(h->to, SHUT_WR) < 0)
			return -1;
	}
	return 0;
}

/* Copy mode: sends what the buffer holds. 1 when all of it went, 0 when the destination is
 * full (wait for EPOLLOUT), -1 on an error. */
static int flush_copy(struct half *h)
{
	while (h->queued) {
		ssize_t n = send(h->to, h->buf + h->off, h->queued, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		h->off += (size_t)n;
		h->queued -= (size_t)n;
	}
	return 1;
}

/* pump() in copy mode. A receive that fills less than the buffer took all there was (a new
 * edge comes with more), so no call is made only to hear EAGAIN, as in rvs; except after a
 * peer's shutdown was reported (hup), whose FIN raises no edge of its own once the bytes
 * before it are read: then it reads on until the end or EAGAIN. */
static int pump_copy(struct half *h, int hup)
{
	for (;;) {
		int sent = flush_copy(h);
		if (sent <= 0)
			return sent;
		if (h->eof)
			return finish(h);
		ssize_t n = recv(h->from, h->buf, COPY_BYTES, MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		if (n == 0)
			h->eof = 1;
		h->off = 0;
		h->queued = (size_t)n;
		if (n > 0 && n < COPY_BYTES && !hup)
			return flush_copy(h) < 0 ? -1 : 0;
	}
}

/* Moves what can move now. Returns -1 on an error or reset (the connection is dropped).
 * hup: the event reported a peer's shutdown (EPOLLRDHUP or EPOLLHUP). */
static int pump(struct half *h, int hup)
{
	if (copy_mode)
		return pump_copy(h, hup);
	for (;;) {
		if (h->queued) {
			ssize_t n = splice(h->pipe[0], NULL, h->to, NULL, h->queued,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0)
				return errno == EAGAIN ? 0 : -1;
			h->queued -= (size_t)n;
			if (h->queued)
				return 0; /* the destination is full: wait for EPOLLOUT */
		}
		if (h->eof)
			return finish(h);
		ssize_t n = splice(h->from, NULL, h->pipe[1], NULL, PIPE_BYTES,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		if (n == 0)
			h->eof = 1;
		h->queued += (size_t)n;
	}
}

static void drop(struct conn *c, struct conn **dead)
{
	if (c->dead)
		return;
	c->dead = 1;
	for (int i = 0; i < 2; i++) {
		close(c->fd[i]);
		if (c->half[i].pipe[0] >= 0)
			close(c->half[i].pipe[0]);
		if (c->half[i].pipe[1] >= 0)
			close(c->half[i].pipe[1]);
		free(c->half[i].buf);
	}
	/* freed after the batch: later events of the same batch may still point at it */
	c->next_dead = *dead;
	*dead = c;
}

static int open_pipe(int p[2])
{
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES); /* best effort, as rvs */
	return 0;
}

static void start(int ep, int client, unsigned *next)
{
	int one = 1;
	int server = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct conn *c = calloc(1, sizeof(*c));
	if (server < 0 || !c)
		goto fail;
	setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in *to = &servers[(*next)++ % (unsigned)nservers];
	if (connect(server, (struct sockaddr *)to, sizeof(*to)) < 0 && errno != EINPROGRESS)
		goto fail;
	c->fd[0] = client;
	c->fd[1] = server;
	for (int i = 0; i < 2; i++) {
		c->half[i].pipe[0] = c->half[i].pipe[1] = -1;
		c->half[i].from = c->fd[i];
		c->half[i].to = c->fd[1 - i];
	}
	for (int i = 0; i < 2; i++)
		if (copy_mode ? !(c->half[i].buf = malloc(COPY_BYTES)) : open_pipe(c->half[i].pipe) < 0)
			goto fail_pipes;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, client, &ev) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, server, &ev) < 0)
		goto fail_pipes;
	return;
fail_pipes:
	for (int i = 0; i < 2; i++) {
		if (c->half[i].pipe[0] >= 0)
			close(c->half[i].pipe[0]);
		if (c->half[i].pipe[1] >= 0)
			close(c->half[i].pipe[1]);
		free(c->half[i].buf);
	}
fail:
	free(c);
	if (server >= 0)
		close(server);
	close(client);
}

static void *worker(void *arg)
{
	(void)arg;
	int one = 1;
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port) };
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(ls, 4096) < 0) {
		perror("splice-relay: listen");
		exit(1);
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev) < 0) {
		perror("splice-relay: epoll");
		exit(1);
	}
	unsigned next = 0;
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		if (n < 0 && errno != EINTR) {
			perror("splice-relay: epoll_wait");
			exit(1);
		}
		struct conn *dead = NULL;
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!c) {
				int fd;
				while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
					start(ep, fd, &next);
				continue;
			}
			if (c->dead)
				continue;
			int hup = (evs[i].events & (EPOLLRDHUP | EPOLLHUP)) != 0;
			if ((evs[i].events & EPOLLERR) || pump(&c->half[0], hup) < 0 || pump(&c->half[1], hup) < 0 ||
			    (c->half[0].shut && c->half[1].shut))
				drop(c, &dead);
		}
		while (dead) {
			struct conn *c = dead;
			dead = c->next_dead;
			free(c);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc - 3 > MAX_SERVERS) {
		fprintf(stderr, "usage: splice-relay THREADS LISTEN_PORT SERVER_PORT... (1 to %d servers)\n",
			MAX_SERVERS);
		return 2;
	}
	int threads = atoi(argv[1]);
	listen_port = atoi(argv[2]);
	if (threads < 1 || threads > 64 || listen_port < 1 || listen_port > 65535) {
		fprintf(stderr, "splice-relay: bad THREADS or LISTEN_PORT\n");
		return 2;
	}
	for (int i = 3; i < argc; i++) {
		int port = atoi(argv[i]);
		if (port < 1 || port > 65535) {
			fprintf(stderr, "splice-relay: bad SERVER_PORT %s\n", argv[i]);
			return 2;
		}
		servers[nservers].sin_family = AF_INET;
		servers[nservers].sin_port = htons((uint16_t)port);
		servers[nservers].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		nservers++;
	}
	const char *copy = getenv("RELAY_COPY");
	copy_mode = copy && strcmp(copy, "1") == 0;
	signal(SIGPIPE, SIG_IGN);
	pthread_t tid[64];
	for (int i = 0; i < threads; i++)
		if (pthread_create(&tid[i], NULL, worker, NULL) != 0) {
			fprintf(stderr, "splice-relay: cannot start a thread\n");
			return 1;
		}
	for (int i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	return 0;
}
