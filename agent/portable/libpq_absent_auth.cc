// The GSSAPI (Kerberos) and LDAP functions Debian's static libpq refers to, for the portable
// agent, which links libpq statically: Debian ships no static Kerberos or LDAP library, and
// their shared ones (with gnutls, p11-kit and nettle behind them) were a quarter of the agent's
// memory. Each one fails the way the real library fails when nothing is configured, so libpq
// takes its own "not available" paths:
//  - gss_acquire_cred finds no credential cache: libpq then never tries GSSAPI encryption
//    (gssencmode=prefer, the default, goes on in the clear or over TLS);
//  - a server that asks for GSSAPI authentication gets an error naming this build;
//  - ldap_init creates nothing: an ldap:// service lookup fails with libpq's own message.
// Password, md5, SCRAM, certificate and trust authentication, and TLS, are libpq's own and
// unaffected. Signatures are GSSAPI's (RFC 2744) and OpenLDAP's, by ABI: pointers, 32-bit
// status words and ints.
#include <cstddef>
#include <cstdint>
#include <cstring>

extern "C" {

using OM_uint32 = uint32_t;
struct gss_buffer_desc_struct {
  size_t length;
  void* value;
};
using gss_buffer_t = gss_buffer_desc_struct*;

constexpr OM_uint32 GSS_S_COMPLETE = 0;
constexpr OM_uint32 GSS_S_FAILURE = 13u << 16;
constexpr OM_uint32 GSS_S_UNAVAILABLE = 16u << 16;

static char kGssMessage[] =
    "GSSAPI (Kerberos) is not built into this portable vigil-agent; use password, SCRAM or "
    "certificate authentication, or an agent built with -DVIGIL_PORTABLE_AGENT=OFF (Debian's "
    "shared libpq)";

// A non-null OID for libpq to pass back to gss_import_name, which fails anyway.
static struct {
  OM_uint32 length;
  void* elements;
} kHostBasedService = {0, nullptr};
void* GSS_C_NT_HOSTBASED_SERVICE = &kHostBasedService;

static OM_uint32 Unavailable(OM_uint32* minor) {
  if (minor != nullptr) {
    *minor = 0;
  }
  return GSS_S_UNAVAILABLE;
}

// Releasing nothing succeeds.
static OM_uint32 Complete(OM_uint32* minor) {
  if (minor != nullptr) {
    *minor = 0;
  }
  return GSS_S_COMPLETE;
}

static void Clear(gss_buffer_t buffer) {
  if (buffer != nullptr) {
    buffer->length = 0;
    buffer->value = nullptr;
  }
}

OM_uint32 gss_acquire_cred(OM_uint32* minor, void* /*name*/, OM_uint32 /*time_req*/,
                           void* /*mechs*/, int /*usage*/, void** cred, void** /*actual_mechs*/,
                           OM_uint32* /*time_rec*/) {
  if (cred != nullptr) {
    *cred = nullptr;
  }
  Unavailable(minor);
  return GSS_S_FAILURE;
}

OM_uint32 gss_import_name(OM_uint32* minor, gss_buffer_t /*name*/, void* /*type*/, void** out) {
  if (out != nullptr) {
    *out = nullptr;
  }
  return Unavailable(minor);
}

OM_uint32 gss_init_sec_context(OM_uint32* minor, void* /*cred*/, void** /*context*/,
                               void* /*target*/, void* /*mech*/, OM_uint32 /*flags*/,
                               OM_uint32 /*time_req*/, void* /*bindings*/, gss_buffer_t /*input*/,
                               void** /*actual_mech*/, gss_buffer_t output,
                               OM_uint32* /*ret_flags*/, OM_uint32* /*time_rec*/) {
  Clear(output);
  return Unavailable(minor);
}

OM_uint32 gss_display_status(OM_uint32* minor, OM_uint32 /*status*/, int /*type*/, void* /*mech*/,
                             OM_uint32* message_context, gss_buffer_t text) {
  Complete(minor);
  if (message_context != nullptr) {
    *message_context = 0;  // one message: libpq's loop ends
  }
  if (text != nullptr) {
    text->length = strlen(kGssMessage);
    text->value = kGssMessage;
  }
  return GSS_S_COMPLETE;
}

OM_uint32 gss_release_buffer(OM_uint32* minor, gss_buffer_t buffer) {
  Clear(buffer);  // only the static message is ever handed out
  return Complete(minor);
}

OM_uint32 gss_release_cred(OM_uint32* minor, void** cred) {
  if (cred != nullptr) {
    *cred = nullptr;
  }
  return Complete(minor);
}

OM_uint32 gss_release_name(OM_uint32* minor, void** name) {
  if (name != nullptr) {
    *name = nullptr;
  }
  return Complete(minor);
}

OM_uint32 gss_delete_sec_context(OM_uint32* minor, void** context, gss_buffer_t output) {
  if (context != nullptr) {
    *context = nullptr;
  }
  Clear(output);
  return Complete(minor);
}

OM_uint32 gss_wrap(OM_uint32* minor, void* /*context*/, int /*conf*/, OM_uint32 /*qop*/,
                   gss_buffer_t /*in*/, int* /*conf_state*/, gss_buffer_t out) {
  Clear(out);
  return Unavailable(minor);
}

OM_uint32 gss_unwrap(OM_uint32* minor, void* /*context*/, gss_buffer_t /*in*/, gss_buffer_t out,
                     int* /*conf_state*/, OM_uint32* /*qop*/) {
  Clear(out);
  return Unavailable(minor);
}

OM_uint32 gss_wrap_size_limit(OM_uint32* minor, void* /*context*/, int /*conf*/, OM_uint32 /*qop*/,
                              OM_uint32 /*req_output_size*/, OM_uint32* max_input_size) {
  if (max_input_size != nullptr) {
    *max_input_size = 0;
  }
  return Unavailable(minor);
}

// OpenLDAP: libpq calls these only for an ldap:// service URL, and ldap_init comes first.
constexpr int LDAP_UNAVAILABLE = 0x34;

void* ldap_init(const char* /*host*/, int /*port*/) { return nullptr; }
char* ldap_err2string(int /*error*/) {
  return const_cast<char*>("LDAP is not built into this portable vigil-agent");
}
int ldap_set_option(void* /*ld*/, int /*option*/, const void* /*value*/) {
  return LDAP_UNAVAILABLE;
}
int ldap_simple_bind(void* /*ld*/, const char* /*who*/, const char* /*password*/) { return -1; }
int ldap_search_st(void* /*ld*/, const char* /*base*/, int /*scope*/, const char* /*filter*/,
                   char** /*attrs*/, int /*attrsonly*/, void* /*timeout*/, void** result) {
  if (result != nullptr) {
    *result = nullptr;
  }
  return LDAP_UNAVAILABLE;
}
int ldap_result(void* /*ld*/, int /*msgid*/, int /*all*/, void* /*timeout*/, void** result) {
  if (result != nullptr) {
    *result = nullptr;
  }
  return -1;
}
int ldap_count_entries(void* /*ld*/, void* /*chain*/) { return -1; }
void* ldap_first_entry(void* /*ld*/, void* /*chain*/) { return nullptr; }
void** ldap_get_values_len(void* /*ld*/, void* /*entry*/, const char* /*attr*/) { return nullptr; }
void ldap_value_free_len(void** /*values*/) {}
int ldap_msgfree(void* /*message*/) { return 0; }
int ldap_unbind(void* /*ld*/) { return 0; }

}  // extern "C"
