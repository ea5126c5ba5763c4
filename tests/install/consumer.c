/* A program of another project: libdune from an installation, found with
 * `pkg-config libdune` or find_package(dunk) (dunk::dune). */
#include <stdio.h>
#include <string.h>

#include "libdune/dune.h"

int main(void)
{
	int ret = dune_init_and_enter();
	if (ret != 0) {
		printf("dune_init_and_enter: %d\n", ret);
		return 1;
	}
	unsigned short cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	char *page = (char *)0x400000000000;
	if (dune_vm_map_pages(pgroot, page, PGSIZE, PERM_R | PERM_W) != 0)
		return 2;
	strcpy(page, "a pool page");
	printf("libdune consumer: ring %d, %s at %p\n", cs & 3, page, (void *)page);
	return (cs & 3) == 0 ? 0 : 3;
}
