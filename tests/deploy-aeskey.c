/*
 * Print, in lowercase hex, the AES key the database holds for a client:
 * what tests/log-secrets.sh looks for in every log.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "store.h"

int main(int argc, char **argv)
{
	struct store *st = NULL;
	struct store_client c;
	size_t i;
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: deploy-aeskey STATE_DIR CLIENT_NAME\n");
		return 100;
	}
	if ((r = store_open_readonly(argv[1], 0, &st)) < 0 || (r = store_find_client_by_name(st, argv[2], &c)) < 0) {
		fprintf(stderr, "deploy-aeskey: %s: %s\n", argv[2], strerror(-r));
		store_close(st);
		return 1;
	}
	store_close(st);
	if (c.aes_key_len == 0) {
		fprintf(stderr, "deploy-aeskey: %s has no AES key\n", argv[2]);
		return 1;
	}
	for (i = 0; i < c.aes_key_len; i++)
		printf("%02x", c.aes_key[i]);
	printf("\n");
	return 0;
}
