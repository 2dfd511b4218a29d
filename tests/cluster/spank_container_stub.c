/*
 * spank_container_stub.c - the Pyxis stand-in of evalctl's end-to-end test
 * cluster (tests/cluster/). Pyxis and enroot are not packaged in Debian and the
 * test machines have no container runtime, so this SPANK plugin makes srun,
 * sbatch and salloc accept the command-line options of NVIDIA pyxis
 * (--container-image, --container-mounts, ...) and the job scripts evalctl
 * generates run unchanged. There is no container: the command runs on the
 * host's filesystem. Two options are emulated for real:
 *
 *   --container-mounts=SRC:DST[:FLAGS][,SRC:DST[:FLAGS]...]
 *       Each task of the step gets a private mount namespace (unshare) in
 *       which SRC (a host path) is bind-mounted (recursively) on DST. Other
 *       steps and the host do not see these mounts. FLAGS are separated by
 *       "+" as in pyxis: ro, rw, bind, rbind, nosuid, suid, nodev, dev,
 *       noexec, exec, [r]private, [r]shared, [r]slave, [r]unbindable, nofail,
 *       silent, x-create=dir|file|auto. SRC may also be "tmpfs" (a new tmpfs;
 *       size=, mode=, nr_inodes=, nr_blocks=, uid=, gid= allowed as flags) or
 *       "umount" (detach DST in the step). "PATH" alone means PATH:PATH.
 *       SRC must be absolute or start with "." (relative to the job's working
 *       directory, as in pyxis); DST must be absolute.
 *       A missing DST is created: as the job user on the host when the user
 *       may create it there (e.g. below /tmp or inside an earlier bind mount),
 *       otherwise in a tmpfs private to the task's mount namespace that covers
 *       the nearest existing parent directory and re-exposes that directory's
 *       entries by bind mounts (for "/" the task is then chroot()ed into that
 *       tmpfs). Nothing is created on the host in that second case.
 *   --container-workdir=PATH
 *       The task starts in PATH (relative: relative to "/", as in pyxis); PWD
 *       is set accordingly. A missing PATH makes the task fail.
 *
 * As in pyxis, --container-mounts and --container-workdir only take effect if
 * --container-image or --container-name is set for the step (directly or
 * inherited from sbatch/salloc); otherwise srun/sbatch print that they are
 * ignored. For the batch step this means: the batch shell gets the mounts
 * only when the job was submitted with --container-image (or -name).
 * Steps with mounts run with PR_SET_NO_NEW_PRIVS (setuid binaries do not
 * elevate), so a user cannot use a bind mount over e.g. /etc to gain root.
 *
 * For each option given, the job's environment also gets PYXIS_STUB_<OPTION>
 * set to its value ("1" for flags), e.g. PYXIS_STUB_CONTAINER_IMAGE=foo.
 *
 * tests/cluster/up.sh builds it (with libslurm-dev's <slurm/spank.h>) into
 * /usr/local/lib/evalctl-cluster/spank_container_stub.so whenever this file is
 * newer than the .so, and loads it with
 *   /etc/slurm/plugstack.conf.d/container-stub.conf: required <that .so>
 * By hand: gcc -shared -fPIC -O2 -Wall -I/usr/include/slurm \
 *              -o spank_container_stub.so spank_container_stub.c
 * "required" (as pyxis usually is): with "optional" Slurm ignores failing
 * hooks, so a step with a bad --container-mounts would run anyway.
 * Needs Linux >= 5.12 (open_tree, move_mount, fsopen, mount_setattr) and
 * glibc >= 2.36 for their wrappers.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <linux/magic.h>
#include <sys/types.h>
#include <slurm/spank.h>

SPANK_PLUGIN(pyxis_stub, 1);

enum {
	OPT_IMAGE, OPT_MOUNTS, OPT_WORKDIR, OPT_ENV, OPT_NAME, OPT_SAVE,
	OPT_MOUNT_HOME, OPT_NO_MOUNT_HOME, OPT_REMAP_ROOT, OPT_NO_REMAP_ROOT,
	OPT_ENTRYPOINT, OPT_NO_ENTRYPOINT, OPT_WRITABLE, OPT_READONLY,
	OPT_COUNT
};

static const char *env_names[OPT_COUNT] = {
	"PYXIS_STUB_CONTAINER_IMAGE", "PYXIS_STUB_CONTAINER_MOUNTS",
	"PYXIS_STUB_CONTAINER_WORKDIR", "PYXIS_STUB_CONTAINER_ENV",
	"PYXIS_STUB_CONTAINER_NAME", "PYXIS_STUB_CONTAINER_SAVE",
	"PYXIS_STUB_CONTAINER_MOUNT_HOME", "PYXIS_STUB_NO_CONTAINER_MOUNT_HOME",
	"PYXIS_STUB_CONTAINER_REMAP_ROOT", "PYXIS_STUB_NO_CONTAINER_REMAP_ROOT",
	"PYXIS_STUB_CONTAINER_ENTRYPOINT", "PYXIS_STUB_NO_CONTAINER_ENTRYPOINT",
	"PYXIS_STUB_CONTAINER_WRITABLE", "PYXIS_STUB_CONTAINER_READONLY",
};

static char *values[OPT_COUNT];

#define PFX "pyxis_stub: "

/* ------------------------------------------------------------------ parsing */

enum { K_BIND, K_TMPFS, K_UMOUNT };

struct mnt {
	char *src;              /* as given (K_BIND) */
	char dst[PATH_MAX];     /* absolute, normalized */
	int kind;
	int recursive;          /* rbind (default) or bind */
	int ro;
	int nofail;
	uint64_t attr_set, attr_clr;    /* MOUNT_ATTR_NOSUID/NODEV/NOEXEC */
	unsigned long prop;     /* MS_PRIVATE/SHARED/SLAVE/UNBINDABLE [|MS_REC] */
	char tmpfs_opts[256];
	int tree_fd;            /* detached clone of SRC (K_BIND) or -1 */
	int src_is_dir;
};

struct mnts {
	struct mnt *v;
	size_t n;
};

static void mnts_free(struct mnts *m)
{
	size_t i;
	for (i = 0; i < m->n; i++) {
		free(m->v[i].src);
		if (m->v[i].tree_fd >= 0)
			close(m->v[i].tree_fd);
	}
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

/* "/a//b/./c/" -> "/a/b/c"; fails on ".." components and on "/" itself */
static int normalize_dst(const char *in, char *out, size_t len, char *err, size_t errlen)
{
	char *tmp = strdup(in), *save = NULL, *comp;
	size_t o = 0;

	if (!tmp) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	out[0] = '\0';
	for (comp = strtok_r(tmp, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		if (!strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			snprintf(err, errlen, "mount target must not contain \"..\": '%s'", in);
			free(tmp);
			return -1;
		}
		if (o + 1 + strlen(comp) + 1 > len) {
			snprintf(err, errlen, "mount target too long: '%s'", in);
			free(tmp);
			return -1;
		}
		out[o++] = '/';
		strcpy(out + o, comp);
		o += strlen(comp);
	}
	free(tmp);
	if (o == 0) {
		snprintf(err, errlen, "mount target \"/\" is not supported: '%s'", in);
		return -1;
	}
	return 0;
}

static int starts_with(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

static int parse_flag(struct mnt *e, const char *f, char *err, size_t errlen)
{
	static const struct { const char *name; uint64_t set, clr; } attrs[] = {
		{ "nosuid", MOUNT_ATTR_NOSUID, 0 }, { "suid", 0, MOUNT_ATTR_NOSUID },
		{ "nodev", MOUNT_ATTR_NODEV, 0 },   { "dev", 0, MOUNT_ATTR_NODEV },
		{ "noexec", MOUNT_ATTR_NOEXEC, 0 }, { "exec", 0, MOUNT_ATTR_NOEXEC },
	};
	static const struct { const char *name; unsigned long prop; } props[] = {
		{ "private", MS_PRIVATE }, { "rprivate", MS_PRIVATE | MS_REC },
		{ "shared", MS_SHARED },   { "rshared", MS_SHARED | MS_REC },
		{ "slave", MS_SLAVE },     { "rslave", MS_SLAVE | MS_REC },
		{ "unbindable", MS_UNBINDABLE }, { "runbindable", MS_UNBINDABLE | MS_REC },
	};
	static const char *tmpfs_opts[] = {
		"size=", "nr_blocks=", "nr_inodes=", "mode=", "uid=", "gid=", NULL
	};
	size_t i;

	if (!*f || !strcmp(f, "silent") || !strcmp(f, "x-detach") ||
	    !strcmp(f, "x-create=auto") || !strcmp(f, "x-create=dir") ||
	    !strcmp(f, "x-create=file"))
		return 0;
	if (!strcmp(f, "ro")) { e->ro = 1; return 0; }
	if (!strcmp(f, "rw")) { e->ro = 0; return 0; }
	if (!strcmp(f, "bind")) { e->recursive = 0; return 0; }
	if (!strcmp(f, "rbind")) { e->recursive = 1; return 0; }
	if (!strcmp(f, "nofail")) { e->nofail = 1; return 0; }
	for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
		if (!strcmp(f, attrs[i].name)) {
			e->attr_set = (e->attr_set & ~attrs[i].clr) | attrs[i].set;
			e->attr_clr = (e->attr_clr & ~attrs[i].set) | attrs[i].clr;
			return 0;
		}
	for (i = 0; i < sizeof(props) / sizeof(props[0]); i++)
		if (!strcmp(f, props[i].name)) {
			e->prop = props[i].prop;
			return 0;
		}
	if (e->kind == K_TMPFS)
		for (i = 0; tmpfs_opts[i]; i++)
			if (starts_with(f, tmpfs_opts[i])) {
				size_t l = strlen(e->tmpfs_opts);
				if (l + strlen(f) + 2 > sizeof(e->tmpfs_opts)) {
					snprintf(err, errlen, "tmpfs options too long");
					return -1;
				}
				snprintf(e->tmpfs_opts + l, sizeof(e->tmpfs_opts) - l,
					 "%s%s", l ? "," : "", f);
				return 0;
			}
	snprintf(err, errlen, "unsupported mount flag '%s' (the stub knows ro, rw, "
		 "bind, rbind, [no]suid, [no]dev, [no]exec, [r]private, [r]shared, "
		 "[r]slave, [r]unbindable, nofail, silent, x-create=...; tmpfs: size=, "
		 "mode=, nr_inodes=, nr_blocks=, uid=, gid=)", f);
	return -1;
}

/* Parse a --container-mounts value the way pyxis does ("," between entries,
 * ":" between SRC, DST and FLAGS, "+" between flags). */
static int parse_mounts(const char *spec, struct mnts *out, char *err, size_t errlen)
{
	char *dup, *rest, *item;

	out->v = NULL;
	out->n = 0;
	if (!spec || !*spec) {
		snprintf(err, errlen, "argument required");
		return -1;
	}
	if (!(dup = strdup(spec))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rest = dup;
	while ((item = strsep(&rest, ",")) != NULL) {
		char *r = item, *src, *dst, *flags = NULL, *f;
		struct mnt *e, *nv;

		src = strsep(&r, ":");
		if (!src || !*src)
			goto bad_format;
		dst = src;
		if (r) {
			dst = strsep(&r, ":");
			if (!dst || !*dst)
				goto bad_format;
			if (r && *r)
				flags = r;
		}
		if (!(nv = realloc(out->v, (out->n + 1) * sizeof(*nv)))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		out->v = nv;
		e = &out->v[out->n++];
		memset(e, 0, sizeof(*e));
		e->tree_fd = -1;
		e->recursive = 1;
		if (!strcmp(src, "tmpfs"))
			e->kind = K_TMPFS;
		else if (!strcmp(src, "umount"))
			e->kind = K_UMOUNT;
		else if (src[0] == '/' || src[0] == '.')
			e->kind = K_BIND;
		else {
			snprintf(err, errlen, "mount source must be an absolute path, a "
				 "relative path starting with ./ or ../, \"tmpfs\" or "
				 "\"umount\" (got '%s' in '%s')", src, spec);
			goto fail;
		}
		if (!(e->src = strdup(src))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (dst[0] != '/') {
			snprintf(err, errlen, "mount target must be an absolute path "
				 "(got '%s' in '%s')", dst, spec);
			goto fail;
		}
		if (normalize_dst(dst, e->dst, sizeof(e->dst), err, errlen) < 0)
			goto fail;
		while (flags && (f = strsep(&flags, "+")) != NULL)
			if (parse_flag(e, f, err, errlen) < 0)
				goto fail;
	}
	free(dup);
	return 0;

bad_format:
	snprintf(err, errlen, "invalid format '%s' in '%s' (expected SRC:DST[:FLAGS][,...])",
		 item, spec);
fail:
	free(dup);
	mnts_free(out);
	return -1;
}

/* ---------------------------------------------------------- credentials */

/* File-system credentials of the job user, to open SRC and create DST with the
 * user's permissions while the task still runs as root. */
struct creds {
	uid_t uid;
	gid_t gid;
	int ngids;
	gid_t *gids;
	int nsaved;
	gid_t *saved;
};

static int as_user(struct creds *c)
{
	int n = getgroups(0, NULL);

	c->saved = calloc(n > 0 ? n : 1, sizeof(gid_t));
	if (!c->saved || (c->nsaved = getgroups(n, c->saved)) < 0)
		return -1;
	if (c->ngids > 0 ? setgroups(c->ngids, c->gids) : setgroups(1, &c->gid))
		return -1;
	setfsgid(c->gid);
	setfsuid(c->uid);
	if ((uid_t) setfsuid(-1) != c->uid || (gid_t) setfsgid(-1) != c->gid) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

static void as_root(struct creds *c)
{
	int e = errno;
	setfsuid(0);
	setfsgid(0);
	if (c->saved && setgroups(c->nsaved, c->saved) < 0)
		slurm_error(PFX "cannot restore groups: %m");
	free(c->saved);
	c->saved = NULL;
	errno = e;
}

/* ------------------------------------------------ private tmpfs "underlay" */

/* tmpfs layers this task put over existing directories */
#define MAX_LAYERS 32
#define MAX_LAYER_ENTRIES 1024
static struct { dev_t dev; int ro; } layers[MAX_LAYERS];
static int nlayers;
static int chrooted;

struct ul_entry {
	char *name;
	char *link;             /* symlink target, or NULL */
	int is_dir;
	int tree_fd;            /* detached clone of the original entry */
};

/*
 * Cover the existing directory `dir` with a tmpfs (same mode and owner) that
 * contains the same entries: symlinks are copied, everything else is a
 * recursive bind mount of the original. New entries can then be created in
 * the tmpfs without touching the host. If `dir` is the root directory, the
 * task chroot()s into the tmpfs.
 */
static int underlay(const char *dir)
{
	struct ul_entry *ents = NULL;
	size_t n = 0, i;
	int dfd = -1, fsfd = -1, mfd = -1, rv = -1;
	struct stat st, mst;
	struct statvfs sv;
	struct statfs sf;
	char opt[32], real[PATH_MAX];
	DIR *d = NULL;
	struct dirent *de;

	if (nlayers >= MAX_LAYERS) {
		slurm_error(PFX "too many private tmpfs layers");
		return -1;
	}
	if (!realpath(dir, real) ||
	    (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    fstat(dfd, &st) < 0 || fstatvfs(dfd, &sv) < 0 || fstatfs(dfd, &sf) < 0) {
		slurm_error(PFX "cannot open %s: %m", dir);
		goto out;
	}
	if (sf.f_type == PROC_SUPER_MAGIC || sf.f_type == SYSFS_MAGIC ||
	    sf.f_type == CGROUP_SUPER_MAGIC || sf.f_type == CGROUP2_SUPER_MAGIC) {
		slurm_error(PFX "will not create anything in %s (a /proc, /sys or cgroup "
			    "file system)", real);
		goto out;
	}
	if (!(d = fdopendir(fcntl(dfd, F_DUPFD_CLOEXEC, 0)))) {
		slurm_error(PFX "cannot read %s: %m", dir);
		goto out;
	}
	while ((de = readdir(d))) {
		struct ul_entry *e;
		struct stat est;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n >= MAX_LAYER_ENTRIES) {
			slurm_error(PFX "%s has more than %d entries, not covering it "
				    "with a tmpfs", dir, MAX_LAYER_ENTRIES);
			goto out;
		}
		if (!(n % 64)) {
			struct ul_entry *ne = realloc(ents, (n + 64) * sizeof(*ne));
			if (!ne)
				goto out;
			ents = ne;
		}
		e = &ents[n];
		memset(e, 0, sizeof(*e));
		e->tree_fd = -1;
		if (!(e->name = strdup(de->d_name)))
			goto out;
		n++;
		if (fstatat(dfd, e->name, &est, AT_SYMLINK_NOFOLLOW) < 0) {
			slurm_error(PFX "cannot stat %s/%s: %m", dir, e->name);
			goto out;
		}
		if (S_ISLNK(est.st_mode)) {
			char buf[PATH_MAX];
			ssize_t l = readlinkat(dfd, e->name, buf, sizeof(buf) - 1);
			if (l < 0) {
				slurm_error(PFX "cannot read link %s/%s: %m", dir, e->name);
				goto out;
			}
			buf[l] = '\0';
			if (!(e->link = strdup(buf)))
				goto out;
			continue;
		}
		e->is_dir = S_ISDIR(est.st_mode);
		e->tree_fd = open_tree(dfd, e->name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
				       AT_RECURSIVE | AT_SYMLINK_NOFOLLOW);
		if (e->tree_fd < 0) {
			slurm_error(PFX "cannot clone %s/%s: %m", dir, e->name);
			goto out;
		}
	}

	snprintf(opt, sizeof(opt), "%o", (unsigned) (st.st_mode & 07777));
	if ((fsfd = fsopen("tmpfs", FSOPEN_CLOEXEC)) < 0 ||
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "mode", opt, 0) < 0 ||
	    (snprintf(opt, sizeof(opt), "%u", (unsigned) st.st_uid),
	     fsconfig(fsfd, FSCONFIG_SET_STRING, "uid", opt, 0)) < 0 ||
	    (snprintf(opt, sizeof(opt), "%u", (unsigned) st.st_gid),
	     fsconfig(fsfd, FSCONFIG_SET_STRING, "gid", opt, 0)) < 0 ||
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "size", "16m", 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 ||
	    (mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)) < 0) {
		slurm_error(PFX "cannot create a tmpfs for %s: %m", dir);
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct ul_entry *e = &ents[i];
		int r;
		if (e->link)
			r = symlinkat(e->link, mfd, e->name);
		else if (e->is_dir)
			r = mkdirat(mfd, e->name, 0755);
		else {
			r = openat(mfd, e->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			if (r >= 0)
				r = close(r);
		}
		if (r < 0) {
			slurm_error(PFX "cannot create %s in the tmpfs for %s: %m", e->name, dir);
			goto out;
		}
	}
	if (move_mount(mfd, "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH |
		       MOVE_MOUNT_T_SYMLINKS) < 0) {
		slurm_error(PFX "cannot mount a tmpfs on %s: %m", dir);
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct ul_entry *e = &ents[i];
		if (e->tree_fd < 0)
			continue;
		if (move_mount(e->tree_fd, "", mfd, e->name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
			slurm_error(PFX "cannot re-expose %s/%s on the tmpfs: %m", dir, e->name);
			goto out;
		}
	}
	if (!strcmp(real, "/")) {
		/* Mounting on "/" does not change our root: enter the tmpfs. */
		if (fchdir(mfd) < 0 || chroot(".") < 0) {
			slurm_error(PFX "cannot chroot into the tmpfs over /: %m");
			goto out;
		}
		chrooted = 1;
	}
	if (fstat(mfd, &mst) < 0)
		goto out;
	layers[nlayers].dev = mst.st_dev;
	layers[nlayers].ro = !!(sv.f_flag & ST_RDONLY);
	nlayers++;
	rv = 0;
out:
	for (i = 0; i < n; i++) {
		free(ents[i].name);
		free(ents[i].link);
		if (ents[i].tree_fd >= 0)
			close(ents[i].tree_fd);
	}
	free(ents);
	if (d)
		closedir(d);
	if (dfd >= 0)
		close(dfd);
	if (fsfd >= 0)
		close(fsfd);
	if (mfd >= 0)
		close(mfd);
	return rv;
}

/* index of our tmpfs layer that `path` lives on, or -1 */
static int layer_of(const char *path)
{
	struct stat st;
	int i;
	if (stat(path, &st) < 0)
		return -1;
	for (i = nlayers - 1; i >= 0; i--)
		if (layers[i].dev == st.st_dev)
			return i;
	return -1;
}

/* mkdir -p `anc`/`rest` (existing `anc`); the last component is a directory
 * if want_dir, otherwise an empty file. Returns -1 with errno set. */
static int create_path(const char *anc, const char *rest, int want_dir)
{
	char path[PATH_MAX];
	const char *p = rest;
	size_t len = strlen(anc);

	if (len >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(path, anc);
	if (len == 1)           /* "/" */
		len = 0;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t cl = slash ? (size_t) (slash - p) : strlen(p);
		int last = !slash || !slash[1];
		struct stat st;

		if (len + 1 + cl + 1 > sizeof(path)) {
			errno = ENAMETOOLONG;
			return -1;
		}
		path[len] = '/';
		memcpy(path + len + 1, p, cl);
		len += 1 + cl;
		path[len] = '\0';
		if (!last || want_dir) {
			if (mkdir(path, 0755) < 0) {
				if (errno != EEXIST)
					return -1;
				if (stat(path, &st) < 0)
					return -1;
				if (!S_ISDIR(st.st_mode) && (!last || want_dir)) {
					errno = ENOTDIR;
					return -1;
				}
			}
		} else {
			int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
			if (fd < 0 && errno != EEXIST)
				return -1;
			if (fd >= 0)
				close(fd);
		}
		if (!slash)
			break;
		p = slash + 1;
	}
	return 0;
}

/* Make sure the mount target `dst` exists (directory if want_dir, else file). */
static int ensure_target(const char *dst, int want_dir, struct creds *c)
{
	char anc[PATH_MAX];
	struct stat st;
	const char *rest;
	int l, e;

	if (stat(dst, &st) == 0)
		return 0;
	if (errno != ENOENT) {
		slurm_error(PFX "--container-mounts: mount target %s: %m", dst);
		return -1;
	}
	/* nearest existing ancestor */
	snprintf(anc, sizeof(anc), "%s", dst);
	for (;;) {
		char *s = strrchr(anc, '/');
		if (s == anc) {
			anc[1] = '\0';
			break;
		}
		*s = '\0';
		if (stat(anc, &st) == 0)
			break;
		if (errno != ENOENT) {
			slurm_error(PFX "--container-mounts: mount target %s: %s: %m", dst, anc);
			return -1;
		}
	}
	if (stat(anc, &st) == 0 && !S_ISDIR(st.st_mode)) {
		slurm_error(PFX "--container-mounts: mount target %s: %s is not a directory",
			    dst, anc);
		return -1;
	}
	rest = dst + strlen(anc) + (strcmp(anc, "/") ? 1 : 0);

	/* 1. as the job user, on the host (or inside an earlier bind mount) */
	if (as_user(c) < 0) {
		as_root(c);
		slurm_error(PFX "cannot switch to the job user's credentials: %m");
		return -1;
	}
	l = create_path(anc, rest, want_dir);
	e = errno;
	as_root(c);
	if (l == 0) {
		slurm_verbose(PFX "created mount target %s as uid %u", dst, (unsigned) c->uid);
		return 0;
	}
	if (e != EACCES && e != EPERM && e != EROFS) {
		errno = e;
		slurm_error(PFX "--container-mounts: cannot create mount target %s: %m", dst);
		return -1;
	}
	/* 2. in a writable tmpfs layer of ours, as root */
	l = layer_of(anc);
	if (l >= 0 && !layers[l].ro) {
		if (create_path(anc, rest, want_dir) == 0)
			return 0;
		if (errno != EROFS) {
			slurm_error(PFX "--container-mounts: cannot create mount target %s: %m", dst);
			return -1;
		}
	}
	/* 3. cover `anc` with a private tmpfs, then create it there */
	if (underlay(anc) < 0) {
		slurm_error(PFX "--container-mounts: cannot create mount target %s", dst);
		return -1;
	}
	slurm_verbose(PFX "covered %s with a private tmpfs to create %s", anc, dst);
	if (create_path(anc, rest, want_dir) < 0) {
		slurm_error(PFX "--container-mounts: cannot create mount target %s: %m", dst);
		return -1;
	}
	l = layer_of(anc);
	if (l >= 0 && layers[l].ro) {
		/* the covered directory was read-only: so is its copy */
		struct mount_attr a = { .attr_set = MOUNT_ATTR_RDONLY };
		if (mount_setattr(AT_FDCWD, anc, 0, &a, sizeof(a)) < 0)
			slurm_error(PFX "cannot make the tmpfs on %s read-only: %m", anc);
	}
	return 0;
}

/* ---------------------------------------------------------------- mounts */

static int apply_mounts(struct mnts *m, struct creds *c)
{
	char cwd[PATH_MAX];
	size_t i;

	if (!getcwd(cwd, sizeof(cwd)))
		cwd[0] = '\0';
	if (unshare(CLONE_NEWNS) < 0) {
		slurm_error(PFX "unshare(CLONE_NEWNS) failed: %m");
		return -1;
	}
	/* nothing we mount may propagate back to the host */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		slurm_error(PFX "cannot make / private in the new mount namespace: %m");
		return -1;
	}

	/* 1. open every source as the job user, in the host's view, and clone it */
	for (i = 0; i < m->n; i++) {
		struct mnt *e = &m->v[i];
		struct stat st;
		int fd, err;

		if (e->kind != K_BIND)
			continue;
		if (as_user(c) < 0) {
			as_root(c);
			slurm_error(PFX "cannot switch to the job user's credentials: %m");
			return -1;
		}
		fd = open(e->src, O_PATH | O_CLOEXEC);
		err = errno;
		as_root(c);
		if (fd < 0) {
			if (e->nofail) {
				slurm_verbose(PFX "skipping %s:%s (nofail): %s", e->src, e->dst,
					      strerror(err));
				continue;
			}
			slurm_error(PFX "--container-mounts: mount source %s: %s%s", e->src,
				    strerror(err), e->src[0] == '.' ? " (relative to the job's "
				    "working directory)" : "");
			return -1;
		}
		if (fstat(fd, &st) < 0) {
			slurm_error(PFX "cannot stat %s: %m", e->src);
			close(fd);
			return -1;
		}
		e->src_is_dir = S_ISDIR(st.st_mode);
		e->tree_fd = open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
				       AT_EMPTY_PATH | (e->recursive ? AT_RECURSIVE : 0));
		close(fd);
		if (e->tree_fd < 0) {
			slurm_error(PFX "cannot bind %s: %m", e->src);
			return -1;
		}
		if (e->ro || e->attr_set || e->attr_clr) {
			struct mount_attr a = {
				.attr_set = e->attr_set | (e->ro ? MOUNT_ATTR_RDONLY : 0),
				.attr_clr = e->attr_clr,
			};
			if (mount_setattr(e->tree_fd, "", AT_EMPTY_PATH |
					  (e->recursive ? AT_RECURSIVE : 0), &a, sizeof(a)) < 0) {
				slurm_error(PFX "cannot set mount flags for %s: %m", e->src);
				return -1;
			}
		}
	}

	/* 2. in order: create the target if needed, mount */
	for (i = 0; i < m->n; i++) {
		struct mnt *e = &m->v[i];
		struct stat st;

		switch (e->kind) {
		case K_UMOUNT:
			if (umount2(e->dst, MNT_DETACH) < 0 && !e->nofail) {
				slurm_error(PFX "--container-mounts: umount %s: %m", e->dst);
				return -1;
			}
			continue;
		case K_TMPFS: {
			unsigned long fl = (e->ro ? MS_RDONLY : 0) |
				((e->attr_set & MOUNT_ATTR_NOSUID) ? MS_NOSUID : 0) |
				((e->attr_set & MOUNT_ATTR_NODEV) ? MS_NODEV : 0) |
				((e->attr_set & MOUNT_ATTR_NOEXEC) ? MS_NOEXEC : 0);
			if (ensure_target(e->dst, 1, c) < 0)
				return -1;
			if (mount("tmpfs", e->dst, "tmpfs", fl, e->tmpfs_opts) < 0) {
				slurm_error(PFX "--container-mounts: tmpfs on %s: %m", e->dst);
				return -1;
			}
			break;
		}
		case K_BIND:
			if (e->tree_fd < 0)     /* nofail and missing */
				continue;
			if (ensure_target(e->dst, e->src_is_dir, c) < 0)
				return -1;
			if (stat(e->dst, &st) == 0 && (S_ISDIR(st.st_mode) != 0) != (e->src_is_dir != 0)) {
				slurm_error(PFX "--container-mounts: mount source %s is %sa "
					    "directory but target %s is %sa directory", e->src,
					    e->src_is_dir ? "" : "not ", e->dst,
					    e->src_is_dir ? "not " : "");
				return -1;
			}
			/* like mount(2), follow a symlink at DST */
			if (move_mount(e->tree_fd, "", AT_FDCWD, e->dst,
				       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS) < 0) {
				slurm_error(PFX "--container-mounts: cannot mount %s on %s: %m",
					    e->src, e->dst);
				return -1;
			}
			close(e->tree_fd);
			e->tree_fd = -1;
			break;
		}
		if (e->prop && mount(NULL, e->dst, NULL, e->prop, NULL) < 0) {
			slurm_error(PFX "--container-mounts: cannot set propagation of %s: %m",
				    e->dst);
			return -1;
		}
		slurm_verbose(PFX "mounted %s on %s%s", e->kind == K_TMPFS ? "tmpfs" : e->src,
			      e->dst, e->ro ? " (ro)" : "");
	}

	/* setuid binaries must not gain privileges under user-chosen mounts */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		slurm_error(PFX "prctl(PR_SET_NO_NEW_PRIVS): %m");
		return -1;
	}
	if (chrooted && (!cwd[0] || chdir(cwd) < 0) && chdir("/") < 0) {
		slurm_error(PFX "chdir: %m");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ options */

static int opt_cb(int val, const char *optarg, int remote)
{
	char err[1024];
	struct mnts m;

	if (val < 0 || val >= OPT_COUNT)
		return -1;
	if (!remote) {
		/* srun/sbatch/salloc: reject what the step could not use */
		if ((val == OPT_MOUNTS || val == OPT_WORKDIR || val == OPT_IMAGE ||
		     val == OPT_NAME) && (!optarg || !*optarg)) {
			slurm_error(PFX "--%s: argument required",
				    val == OPT_MOUNTS ? "container-mounts" :
				    val == OPT_WORKDIR ? "container-workdir" :
				    val == OPT_IMAGE ? "container-image" : "container-name");
			return -1;
		}
		if (val == OPT_MOUNTS) {
			if (parse_mounts(optarg, &m, err, sizeof(err)) < 0) {
				slurm_error(PFX "--container-mounts: %s", err);
				return -1;
			}
			mnts_free(&m);
		}
	}
	/* In slurmstepd errors are only reported from task_init_privileged, where
	 * they reach the job's output (see below). */
	free(values[val]);
	values[val] = strdup(optarg && *optarg ? optarg : "1");
	return values[val] ? 0 : -1;
}

#define STUB "[pyxis stub] "
/* Not named "spank_options": Slurm ignores that static table in the allocator
 * context (sbatch/salloc), so the options are registered from slurm_spank_init
 * in every context instead, as pyxis does. */
static struct spank_option stub_options[] = {
	{ "container-image", "[USER@][REGISTRY#]IMAGE[:TAG]|PATH",
	  STUB "image name (informational: no container is used)", 1, OPT_IMAGE, opt_cb },
	{ "container-mounts", "SRC:DST[:FLAGS][,SRC:DST...]",
	  STUB "bind mounts in a private mount namespace of the step "
	  "(flags separated by \"+\", e.g. \"ro+rprivate\")", 1, OPT_MOUNTS, opt_cb },
	{ "container-workdir", "PATH",
	  STUB "working directory of the step", 1, OPT_WORKDIR, opt_cb },
	{ "container-env", "NAME[,NAME...]",
	  STUB "accepted, no effect", 1, OPT_ENV, opt_cb },
	{ "container-name", "NAME",
	  STUB "accepted, no effect (enables mounts/workdir like an image)", 1, OPT_NAME, opt_cb },
	{ "container-save", "PATH",
	  STUB "accepted, no effect", 1, OPT_SAVE, opt_cb },
	{ "container-mount-home", NULL,
	  STUB "accepted, no effect", 0, OPT_MOUNT_HOME, opt_cb },
	{ "no-container-mount-home", NULL,
	  STUB "accepted, no effect", 0, OPT_NO_MOUNT_HOME, opt_cb },
	{ "container-remap-root", NULL,
	  STUB "accepted, no effect", 0, OPT_REMAP_ROOT, opt_cb },
	{ "no-container-remap-root", NULL,
	  STUB "accepted, no effect", 0, OPT_NO_REMAP_ROOT, opt_cb },
	{ "container-entrypoint", NULL,
	  STUB "accepted, no effect", 0, OPT_ENTRYPOINT, opt_cb },
	{ "no-container-entrypoint", NULL,
	  STUB "accepted, no effect", 0, OPT_NO_ENTRYPOINT, opt_cb },
	{ "container-writable", NULL,
	  STUB "accepted, no effect", 0, OPT_WRITABLE, opt_cb },
	{ "container-readonly", NULL,
	  STUB "accepted, no effect", 0, OPT_READONLY, opt_cb },
	SPANK_OPTIONS_TABLE_END
};

/* pyxis only acts when there is a container to act on */
static int container_requested(void)
{
	return values[OPT_IMAGE] || values[OPT_NAME];
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	int i;
	(void) ac; (void) av;
	switch (spank_context()) {
	case S_CTX_LOCAL:       /* srun */
	case S_CTX_REMOTE:      /* slurmstepd */
	case S_CTX_ALLOCATOR:   /* sbatch, salloc */
		break;
	default:
		return 0;
	}
	for (i = 0; stub_options[i].name; i++)
		if (spank_option_register(sp, &stub_options[i]) != ESPANK_SUCCESS) {
			slurm_error(PFX "cannot register --%s", stub_options[i].name);
			return -1;
		}
	return 0;
}

/* srun/sbatch/salloc, after option processing (inherited values included) */
int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	(void) sp; (void) ac; (void) av;
	if (spank_context() != S_CTX_LOCAL && spank_context() != S_CTX_ALLOCATOR)
		return 0;
	if (container_requested())
		return 0;
	if (values[OPT_MOUNTS])
		slurm_error(PFX "ignoring --container-mounts because neither "
			    "--container-image nor --container-name is set");
	if (values[OPT_WORKDIR])
		slurm_error(PFX "ignoring --container-workdir because neither "
			    "--container-image nor --container-name is set");
	return 0;
}

/* Remote context (slurmstepd), once per step, before the tasks start:
 * expose what was requested to the job's environment. */
int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
	int i;
	(void) ac; (void) av;
	if (!spank_remote(sp))
		return 0;
	for (i = 0; i < OPT_COUNT; i++)
		if (values[i])
			spank_setenv(sp, env_names[i], values[i], 1);
	return 0;
}

/* Remote context, in each task's process, as root, after slurmstepd has set up
 * the job's output (so errors reach it) and before privileges are dropped. A
 * failure here makes the task exit with status 1 before running anything. */
int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
	struct mnts m = { NULL, 0 };
	struct creds c;
	char err[1024];
	int rv;
	(void) ac; (void) av;

	if (!spank_remote(sp) || !values[OPT_MOUNTS] || !container_requested())
		return 0;
	if (parse_mounts(values[OPT_MOUNTS], &m, err, sizeof(err)) < 0) {
		slurm_error(PFX "--container-mounts: %s", err);
		return -1;
	}
	memset(&c, 0, sizeof(c));
	if (spank_get_item(sp, S_JOB_UID, &c.uid) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_GID, &c.gid) != ESPANK_SUCCESS) {
		slurm_error(PFX "cannot get the job's uid/gid");
		mnts_free(&m);
		return -1;
	}
	if (spank_get_item(sp, S_JOB_SUPPLEMENTARY_GIDS, &c.gids, &c.ngids) != ESPANK_SUCCESS) {
		c.gids = NULL;
		c.ngids = 0;
	}
	rv = apply_mounts(&m, &c);
	mnts_free(&m);
	return rv;
}

/* Remote context, in each task's process, as the job user, just before exec */
int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	char cwd[PATH_MAX];
	const char *wd = values[OPT_WORKDIR];
	(void) ac; (void) av;

	if (!spank_remote(sp) || !wd || !container_requested())
		return 0;
	/* as in pyxis, a relative workdir is relative to the container's "/" */
	if ((wd[0] != '/' && chdir("/") < 0) || chdir(wd) < 0) {
		slurm_error(PFX "couldn't chdir to %s: %m", wd);
		return -1;
	}
	if (getcwd(cwd, sizeof(cwd)))
		spank_setenv(sp, "PWD", cwd, 1);
	return 0;
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
	int i;
	(void) sp; (void) ac; (void) av;
	for (i = 0; i < OPT_COUNT; i++) {
		free(values[i]);
		values[i] = NULL;
	}
	return 0;
}
