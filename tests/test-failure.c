/*
 * test-failure: a noted detail is told for the very code it was noted
 * with, once; any other code, or a cleared note, is told by strerror();
 * the longest note fits without overflowing.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "failure.h"

#include "tap.h"

int main(void)
{
	char big[2000];

	is_int(failure_note(-EIO, "SQLite: %s", "disk I/O error"), -EIO, "failure_note returns the code it notes");
	ok(strcmp(failure_str(-EIO), "SQLite: disk I/O error") == 0, "the note is told for its code");
	ok(strcmp(failure_str(-EIO), strerror(EIO)) == 0, "only once: then the code is told by strerror");

	(void)failure_note(-EIO, "SQLite: disk I/O error");
	ok(strcmp(failure_str(-ENOSPC), strerror(ENOSPC)) == 0, "another code never gets the note");
	ok(strcmp(failure_str(-EIO), strerror(EIO)) == 0, "and the note is gone once a failure was told");

	(void)failure_note(-EPROTO, "the database schema is newer than this program knows");
	failure_clear();
	ok(strcmp(failure_str(-EPROTO), strerror(EPROTO)) == 0, "a cleared note is not told");

	(void)failure_note(-EIO, "first");
	(void)failure_note(-EIO, "second");
	ok(strcmp(failure_str(-EIO), "second") == 0, "the latest note is the one told");

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	(void)failure_note(-EIO, "%s", big);
	ok(strlen(failure_str(-EIO)) < sizeof(big) - 1, "a note longer than its room is cut, not overflowed");
	ok(strcmp(failure_str(0), strerror(0)) == 0, "code 0 is told by strerror");
	return tap_done();
}
