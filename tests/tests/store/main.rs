//! The store contract: one suite, run against the in-memory adapter, against the DynamoDB
//! adapter on a real moto server, and against the in-memory adapter behind the cache layer
//! (`session_core::cache`: a cache changes no outcome the contract states). Every case is an
//! `async fn(Harness)`; `contract!` makes a test of it for each adapter, so all are held to
//! exactly the same behaviour.

#![allow(unreachable_pub, clippy::unwrap_used)]

mod cache;
mod concurrency;
mod connections;
mod custom_resource;
mod discovery;
mod event_budget;
mod failover;
mod helpers;
mod home_failover;
mod home_fence;
mod idempotency;
mod leases;
mod migrations;
mod rate_limits;
mod region_beats;
mod regional_quotas;
mod restore;
mod revocations;
mod sessions;
mod simulators;
mod tickets;

macro_rules! contract {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::$module::$case(crate::helpers::Harness::in_memory()).await;
                }
            )*
        }
        mod dynamodb_on_moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::$module::$case(crate::helpers::Harness::dynamodb().await).await;
                }
            )*
        }
        mod in_memory_behind_the_cache {
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = crate::helpers::Harness::in_memory();
                    crate::$module::$case(crate::cache::behind_the_cache(harness)).await;
                }
            )*
        }
    };
}

contract!(
    sessions::a_created_session_reads_back_identically,
    sessions::an_unknown_session_is_absent,
    sessions::creating_the_same_session_twice_is_refused,
    sessions::sessions_list_newest_first_in_pages_and_only_the_owners,
    sessions::a_forged_cursor_position_lists_nothing_of_other_users,
    sessions::the_sessions_quota_counts_open_sessions_and_closing_frees_a_slot,
    sessions::a_stale_writer_cannot_overwrite_a_newer_session,
    sessions::a_writer_holding_an_old_home_cannot_write_the_session,
    sessions::updating_an_unknown_session_is_not_found,
    sessions::an_expired_session_is_absent_everywhere_and_frees_its_slot,
    home_failover::sessions_homed_in_a_region_are_listed_and_unmarked_ones_are_the_primarys,
    home_failover::taking_over_a_home_moves_it_once_fails_its_simulators_and_fences_the_old_home,
    home_failover::a_session_without_a_home_region_is_taken_over_from_the_primary_at_epoch_one,
    home_fence::a_region_that_is_not_the_home_cannot_write_the_session_until_the_home_moves_there,
    home_fence::a_session_without_a_home_region_is_written_by_the_primary_only,
    home_fence::each_region_admits_counts_and_sees_only_its_own_connections_whatever_the_home,
    region_beats::a_regions_latest_beat_is_kept_whatever_order_beats_come_in,
    regional_quotas::a_user_at_the_sessions_quota_in_one_region_can_still_create_in_another,
    regional_quotas::a_session_taken_over_counts_in_its_new_home_and_no_longer_in_the_old,
    simulators::simulators_are_created_listed_and_transitioned,
    simulators::the_simulators_quota_counts_only_unfinished_ones,
    simulators::a_closed_or_expired_session_takes_no_simulators,
    simulators::a_stale_writer_cannot_overwrite_a_newer_simulator,
    discovery::a_simulator_keeps_its_hosting_server_and_one_without_reads_as_the_static_one,
    connections::connections_are_recorded_listed_and_deleted_idempotently,
    connections::a_heartbeat_update_needs_the_current_version,
    connections::the_connections_quota_frees_slots_of_dead_connections,
    connections::a_closed_session_takes_no_connections,
    connections::no_connections_means_no_sessions_with_connections,
    connections::sessions_with_connections_lists_each_such_session_once,
    connections::sessions_with_connections_are_found_across_every_shard,
    connections::a_session_whose_connections_expired_is_not_listed,
    connections::a_session_whose_connections_were_deleted_is_not_listed,
    connections::a_heartbeat_keeps_the_session_listed,
    connections::connections_never_appear_in_the_owners_session_list,
    connections::the_serving_streamer_round_trips_through_a_heartbeat_update,
    tickets::a_ticket_is_consumed_once,
    tickets::a_consumption_record_is_absent_after_the_ticket_expires,
    tickets::a_released_ticket_resumes_from_its_last_delivered_event,
    tickets::a_released_ticket_resumes_from_an_earlier_event_of_the_same_epoch,
    tickets::a_release_admits_one_resume_only,
    tickets::a_ticket_that_was_never_released_cannot_resume,
    tickets::a_release_lapses_at_its_resumable_until,
    tickets::a_ticket_resumes_only_within_the_released_epoch,
    tickets::a_ticket_cannot_resume_ahead_of_its_last_delivered_event,
    tickets::releasing_a_ticket_never_consumed_or_expired_is_not_found,
    tickets::a_release_keeps_the_ticket_record_until_resumable_until,
    tickets::a_release_never_shortens_the_ticket_record,
    tickets::a_second_release_overwrites_the_first,
    tickets::a_resumed_ticket_released_again_resumes_once_more,
    idempotency::a_key_is_claimed_then_replayed_or_refused,
    idempotency::an_abandoned_or_stuck_claim_can_be_taken_again,
    idempotency::keys_belong_to_one_user_and_expire,
    leases::a_lease_has_one_holder_until_it_lapses,
    leases::a_released_lease_is_taken_with_a_higher_token,
    leases::a_holder_marks_its_lease_draining_and_renewals_keep_it,
    leases::acquiring_a_lease_clears_draining,
    leases::only_the_live_holder_can_mark_a_lease_draining,
    revocations::nothing_is_revoked_in_an_empty_list,
    revocations::a_revoked_token_is_found_by_its_id_and_no_other_token_is,
    revocations::a_revoked_subject_refuses_every_token_of_it_only,
    revocations::a_revocation_lapses_at_its_until,
    revocations::a_revocation_is_never_shortened_but_may_be_extended,
    revocations::a_lapsed_revocation_can_be_made_again,
    revocations::when_both_are_revoked_the_tokens_revocation_is_reported,
    rate_limits::a_fresh_key_admits_exactly_its_burst_then_refuses,
    rate_limits::a_refused_key_is_admitted_again_exactly_after_its_retry_after,
    rate_limits::an_idle_key_refills_to_its_whole_burst,
    rate_limits::keys_are_limited_apart,
    rate_limits::concurrent_requests_of_one_key_admit_exactly_the_burst,
    concurrency::concurrent_creates_against_the_sessions_quota_admit_exactly_the_quota,
    concurrency::concurrent_simulator_starts_admit_exactly_the_quota,
    concurrency::concurrent_connects_admit_exactly_the_quota,
    concurrency::concurrent_consumptions_of_one_ticket_have_one_winner,
    concurrency::concurrent_resumes_of_one_release_have_one_winner,
    concurrency::streamers_racing_for_a_lease_yield_one_owner,
    concurrency::concurrent_writers_from_one_version_have_one_winner,
    concurrency::concurrent_claims_of_one_idempotency_key_have_one_winner,
    event_budget::starts_within_the_event_budget_pass_and_one_over_it_is_refused,
    event_budget::stopping_a_simulator_frees_its_events_per_second,
    event_budget::concurrent_equal_starts_across_sessions_admit_exactly_what_fits,
    event_budget::concurrent_unequal_starts_across_sessions_never_exceed_the_budget,
    event_budget::sessions_that_ended_with_running_simulators_no_longer_count,
);
