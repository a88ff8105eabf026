package main

import (
	"os"
	"path/filepath"
	"syscall"
)

// handOver gives files that this command, run as root, created in a
// directory another user owns (the journal's /var/lib/rotord, the
// credentials directory, both owned by rotord) to that directory's owner,
// so that the daemon, which runs as that user, can still open them. A file
// root owned before, or in a directory root owns, is left alone; so is
// everything when rotord does not run as root.
func handOver(paths ...string) {
	if os.Geteuid() != 0 {
		return
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid != 0 {
			continue
		}
		di, err := os.Stat(filepath.Dir(p))
		if err != nil {
			continue
		}
		ds, ok := di.Sys().(*syscall.Stat_t)
		if !ok || ds.Uid == 0 {
			continue
		}
		_ = os.Lchown(p, int(ds.Uid), int(ds.Gid))
	}
}

// stateFiles lists the files rotord keeps for the configuration: the
// journal and the files SQLite and the store keep beside it, the token
// cache and the store key.
func (a *app) stateFiles() []string {
	if a.cfg == nil {
		return nil
	}
	files := []string{a.cfg.SecretServer.TokenCache, a.cfg.Store.KeyFile}
	if a.cfg.Store.Postgres() {
		return files // the journal is on the database server
	}
	db := a.cfg.Store.Path
	return append([]string{db, db + "-wal", db + "-shm", db + ".lock", db + ".migrate-lock"}, files...)
}
