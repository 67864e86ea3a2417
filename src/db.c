/* What the engines of the store (db.h) share. */
#include "config.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "failure.h"

void db_backoff(unsigned attempt)
{
	long ms = 10L * (long)(attempt + 1) + (long)(getpid() % 10);
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		continue;
}

int db_schema_unknown(long long version)
{
	return failure_note(-EPROTO,
	                    "the database schema is newer than this program knows (version %lld; this program "
	                    "knows up to %d)",
	                    version, STORE_SCHEMA_VERSION);
}

int db_schema_old(void)
{
	return failure_note(-EPROTO, "the database schema is older than this program knows; efsession upgrades it "
	                             "when it next runs");
}
