# EF_CHECK_COMPILE_FLAG(FLAG, IF-OK, IF-NOT, EXTRA-FLAGS)
# Whether the C compiler accepts FLAG (with EXTRA-FLAGS, e.g. -Werror).
AC_DEFUN([EF_CHECK_COMPILE_FLAG], [
	AS_VAR_PUSHDEF([CACHEVAR], [ef_cv_cflag_$1])
	AC_CACHE_CHECK([whether the C compiler accepts $1], [CACHEVAR], [
		ef_save_CFLAGS=$CFLAGS
		CFLAGS="$CFLAGS $4 $1"
		AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [return 0;])],
			[AS_VAR_SET([CACHEVAR], [yes])], [AS_VAR_SET([CACHEVAR], [no])])
		CFLAGS=$ef_save_CFLAGS])
	AS_VAR_IF([CACHEVAR], [yes], [m4_default([$2], :)], [m4_default([$3], :)])
	AS_VAR_POPDEF([CACHEVAR])
])

# EF_CHECK_LINK_FLAG(FLAG, IF-OK, IF-NOT, EXTRA-FLAGS)
# Whether the C compiler links a program with FLAG.
AC_DEFUN([EF_CHECK_LINK_FLAG], [
	AS_VAR_PUSHDEF([CACHEVAR], [ef_cv_ldflag_$1])
	AC_CACHE_CHECK([whether the linker accepts $1], [CACHEVAR], [
		ef_save_LDFLAGS=$LDFLAGS
		ef_save_CFLAGS=$CFLAGS
		LDFLAGS="$LDFLAGS $4 $1"
		CFLAGS="$CFLAGS $4"
		AC_LINK_IFELSE([AC_LANG_PROGRAM([], [return 0;])],
			[AS_VAR_SET([CACHEVAR], [yes])], [AS_VAR_SET([CACHEVAR], [no])])
		LDFLAGS=$ef_save_LDFLAGS
		CFLAGS=$ef_save_CFLAGS])
	AS_VAR_IF([CACHEVAR], [yes], [m4_default([$2], :)], [m4_default([$3], :)])
	AS_VAR_POPDEF([CACHEVAR])
])
