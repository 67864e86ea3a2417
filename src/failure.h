/*
 * Why an operation failed, in the words of the layer that failed. Every
 * function returns 0 or a negative errno, and does not log. Where that
 * code alone would lose what went wrong (SQLite's message, libgcrypt's,
 * a database whose schema is newer than the program), the layer notes
 * the detail as it returns the code:
 *
 *	return failure_note(-EIO, "SQLite: %s", sqlite3_errmsg(db));
 *
 * and the one place that reports the failure asks for it by that code:
 *
 *	log_error("Could not store '%s': %s.", name, failure_str(r));
 *
 * A layer that notes clears the note as each of its operations begins, so
 * a note always belongs to the latest operation of the layer that made it;
 * failure_str() gives it only for the very code it was noted with, and
 * only once. A code no layer explained (a disk error, say) is told by
 * strerror(), so the detail of one layer is never shown for another's
 * failure. One note per thread.
 */
#ifndef EF_FAILURE_H
#define EF_FAILURE_H

/* Note the detail of err, a negative errno, and return err. */
__attribute__((format(printf, 2, 3))) int failure_note(int err, const char *fmt, ...);

/* Forget the note: a layer that notes calls this as one of its operations begins. */
void failure_clear(void);

/*
 * The words for a failure that returned err: its note if one was made with
 * that code (and forget it), else strerror(-err). Valid until the next call
 * in this thread.
 */
const char *failure_str(int err);

#endif
