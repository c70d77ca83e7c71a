#pragma once
#include <mpi.h>
// Open MPI's handles are macros over globals; Swift cannot import them.
static inline MPI_Comm mancs_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype mancs_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype mancs_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype mancs_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype mancs_mpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype mancs_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype mancs_mpi_int(void) { return MPI_INT; }
static inline MPI_Op mancs_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op mancs_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op mancs_mpi_min(void) { return MPI_MIN; }
static inline MPI_Op mancs_mpi_bor(void) { return MPI_BOR; }
static inline void *mancs_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Request mancs_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *mancs_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline int mancs_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int mancs_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int mancs_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline MPI_Errhandler mancs_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Status *mancs_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
