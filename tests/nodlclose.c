// Test helper (tests/cli_mpi.sh under ASan): preloaded into the MPI ranks so that the libraries
// Open MPI dlopens stay mapped after MPI_Finalize, and LeakSanitizer can name their frames for
// tests/lsan_openmpi.supp. Never part of cterp.
int dlclose(void *handle);
int dlclose(void *handle) {
    (void)handle;
    return 0;
}
