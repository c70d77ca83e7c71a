#pragma once
#include <hdf5.h>
// HDF5's type and property ids are macros over library globals (and H5P_DEFAULT
// imports with the wrong width): expose them as functions returning hid_t.
static inline hid_t mancs_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t mancs_h5s_all(void) { return H5S_ALL; }
static inline hid_t mancs_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t mancs_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t mancs_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t mancs_h5t_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t mancs_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t mancs_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t mancs_h5t_native_uint16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t mancs_h5t_std_ref_obj(void) { return H5T_STD_REF_OBJ; }
static inline hid_t mancs_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t mancs_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t mancs_h5p_file_create(void) { return H5P_FILE_CREATE; }
static inline hid_t mancs_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t mancs_h5p_dataset_xfer(void) { return H5P_DATASET_XFER; }
static inline hid_t mancs_h5p_link_create(void) { return H5P_LINK_CREATE; }
static inline unsigned mancs_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned mancs_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline unsigned mancs_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned mancs_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline size_t mancs_h5t_variable(void) { return H5T_VARIABLE; }
static inline hid_t mancs_h5fd_sec2(void) { return H5FD_SEC2; }
static inline hsize_t mancs_h5s_unlimited(void) { return H5S_UNLIMITED; }
// Silence HDF5's own error printing; failures become Swift errors instead.
static inline void mancs_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
