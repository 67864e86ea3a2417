/* The detail of the latest failure, kept beside its code until it is reported (failure.h). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "failure.h"

/* Enough for SQLite's longest messages and a file name. */
#define FAILURE_TEXT_MAX 512

static _Thread_local struct {
	int err; /* 0: no note */
	char text[FAILURE_TEXT_MAX];
} note;

static _Thread_local char shown[FAILURE_TEXT_MAX];

int failure_note(int err, const char *fmt, ...)
{
	va_list ap;

	note.err = err;
	va_start(ap, fmt);
	vsnprintf(note.text, sizeof(note.text), fmt, ap);
	va_end(ap);
	return err;
}

void failure_clear(void)
{
	note.err = 0;
}

const char *failure_str(int err)
{
	if (err < 0 && note.err == err)
		memcpy(shown, note.text, sizeof(shown));
	else
		snprintf(shown, sizeof(shown), "%s", strerror(err < 0 ? -err : err));
	note.err = 0;
	return shown;
}
