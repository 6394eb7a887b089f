/* numa-shard-place's accounting of pages a node refused (move_pages(2) answering -ENOMEM or
   -EBUSY for a page), which decides its exit status 4: the outcomes below are what the
   kernel writes into move_pages' status array when a node is full or a page is locked.
   A single-node machine never migrates, so the tool's own run cannot reach this here; the
   lab's guests can. Prints what report_failures says on stderr, and exits 4 when it named
   a node, as the tool does. */
#define main place_main /* the whole tool, its own main renamed, so its static helpers are here */
#include "numa-shard-place.c"
#undef main

int main(void) {
    static tally per[NODE_SLOTS];
    int targets[5] = {1, 1, 1, 2, 3};
    int status[5] = {-ENOMEM, 1, -ENOMEM, -EBUSY, 3};
    per[1].planned = 3;
    per[2].planned = 1;
    per[3].planned = 1;
    count_moves(per, targets, status, 5);
    printf("moved %llu %llu %llu failed %llu %llu %llu\n", (unsigned long long)per[1].moved, (unsigned long long)per[2].moved,
           (unsigned long long)per[3].moved, (unsigned long long)per[1].failed, (unsigned long long)per[2].failed,
           (unsigned long long)per[3].failed);
    return report_failures("model.gguf", per) ? 4 : 0;
}
