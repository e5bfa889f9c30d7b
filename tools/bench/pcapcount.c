/* Bare libpcap baseline for tools/bench-flows.sh: read a capture with pcap_next_ex and count the
 * packets, nothing else. Build: cc -O2 -o pcapcount pcapcount.c -lpcap */
#include <pcap/pcap.h>
#include <stdio.h>

int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    if (argc != 2) {
        fprintf(stderr, "usage: pcapcount FILE\n");
        return 2;
    }
    pcap_t *p = pcap_open_offline(argv[1], err);
    if (!p) {
        fprintf(stderr, "pcapcount: %s\n", err);
        return 2;
    }
    struct pcap_pkthdr *h;
    const u_char *d;
    unsigned long long n = 0, bytes = 0;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &d)) == 1) {
        n++;
        bytes += h->caplen;
    }
    if (rc == -1) {
        fprintf(stderr, "pcapcount: %s\n", pcap_geterr(p));
        return 1;
    }
    printf("%llu packets %llu bytes\n", n, bytes);
    pcap_close(p);
    return 0;
}
