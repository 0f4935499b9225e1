// The Microsoft Graph contact-folder target: one contact folder per mailbox
// (found by roster's extended property, never by name, or the mailbox's
// default Contacts folder), listed by delta links, written by $batch of 20,
// photos as a dependent step. Builds on src/graph (requests) and
// contact_json.h / projection.h (the contact both ways).
#pragma once

#include <memory>
#include <string>

#include "core/connector.h"
#include "graph/auth.h"
#include "graph/client.h"

namespace roster {

struct GraphTargetOptions {
  graph::TokenProvider* tokens = nullptr;  // shared, outlives the target
  graph::GraphClientOptions client;        // graph_url, http options, clock
  std::string app_id;     // client id: the limiter bucket is app_id + "/" + mailbox
  int max_in_flight = 4;  // mailboxes worked at once
};

// The extended properties roster sets, all of type String in roster's own
// GUID namespace (a MAPI named property set): the marker of a managed
// contact (EncodeGraphMarker's value), the folder's owner ("roster:v1:folder:"
// and the rule's bytes in lower-case hex, since Exchange compares values
// without regard to case), and the photo hint of a contact whose photo
// roster put (a hash of its bytes: the contact's photo is read back only
// when it is there).
inline constexpr char kGraphMarkerPropertyId[] =
    "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name roster-marker";
inline constexpr char kGraphFolderPropertyId[] =
    "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name roster-folder";
inline constexpr char kGraphPhotoPropertyId[] =
    "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name roster-photo";

// The folder property's value for `rule`.
std::string GraphFolderMarker(const std::string& rule);

// A Target on Graph v1.0. Open finds the folder of CollectionSpec::rule in
// the mailbox of CollectionSpec::user (a UPN or object id) by roster's
// folder property and creates it (displayName = display_name) when asked; a
// user's folder of that name is never adopted (409 ErrorFolderExists fails
// the mailbox in one sentence). use_default opens the mailbox's Contacts
// folder (well-known name "contacts"), never created or renamed. Every
// managed contact carries CollectionSpec::category when it is set (in the
// default folder, so that Outlook shows roster's contacts apart); reads strip
// it, so an unchanged contact compares equal. Collection ids are
// "graph:/users/<user>/contactFolders/<folder id>" (".../defaultContactFolder/
// <id>" for use_default; each part percent-encoded); a known_url of that form for the same user and
// mode opens without a request, and List answers kNotFound when the folder is gone. Items are named
// by their contact id (immutable ids). Creates are kServerId; batches hold 20, of which Graph runs
// 4 at once; updates are PATCHes of what differs from the item as read. Graph cannot remove a
// contact's photo: a desired item without one leaves the server's, with one warning.
std::unique_ptr<Target> NewGraphTarget(GraphTargetOptions options);

}  // namespace roster
