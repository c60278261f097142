// credential_cache.cc — CredentialCache: one provider's credentials, refreshed in the background.
// The refresh protocol and the invariants (current() never waits on I/O; one fetch at a time;
// nothing secret logged) are described at the top of credentials.cc.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "credentials_internal.h"
#include "leasefs/aws/credentials.h"

namespace leasefs::aws {

struct CredentialCache::Impl {
  std::unique_ptr<CredentialProvider> provider;
  Options options;

  // `mutex` guards everything below and is never held across provider->fetch().
  mutable std::mutex mutex;
  std::condition_variable wake;  // stop requests
  std::shared_ptr<const Credentials> credentials;
  std::optional<WallTime> next_refresh;  // empty: the credentials never expire
  int failures = 0;                      // consecutive failed refreshes
  bool stopping = false;
  std::thread refresher;

  WallTime Now() const { return options.now ? options.now() : std::chrono::system_clock::now(); }

  Deadline FetchDeadline() const {
    return std::chrono::steady_clock::now() + options.fetch_timeout;
  }

  std::chrono::milliseconds Backoff() const {
    auto backoff = options.retry_min;
    for (int i = 1; i < failures && backoff < options.retry_max; i++) backoff *= 2;
    return std::min(backoff, options.retry_max);
  }

  // Installs fresh credentials and plans the next refresh. Caller holds `mutex`.
  void Install(Credentials fresh, WallTime now) {
    failures = 0;
    if (!fresh.expires) {
      next_refresh.reset();
    } else {
      WallTime at = *fresh.expires - options.refresh_before;
      // Already inside the refresh window (short-lived credentials, or the service still hands
      // out the old set): try again at half the time left, but not sooner than retry_min.
      if (at < now)
        at = now + std::max<WallTime::duration>(options.retry_min, (*fresh.expires - now) / 2);
      next_refresh = at;
    }
    credentials = std::make_shared<const Credentials>(std::move(fresh));
  }

  // Keeps the old credentials and plans a retry. Caller holds `mutex`.
  void Failed(const std::string& why, WallTime now) {
    failures++;
    auto backoff = Backoff();
    next_refresh = now + backoff;
    if (credentials && credentials->expires && *credentials->expires > now) {
      spdlog::warn(
          "AWS credentials: refresh from {} failed: {}; keeping the current ones (they expire at "
          "{}), retrying in {} ms",
          provider->name(), why, internal::FormatIso8601(*credentials->expires), backoff.count());
    } else {
      spdlog::error(
          "AWS credentials: refresh from {} failed: {}; none valid now, retrying in {} ms",
          provider->name(), why, backoff.count());
    }
  }

  // Returns why `fresh` cannot be used ("" when it can).
  std::string Unusable(const std::optional<Credentials>& fresh, WallTime now) const {
    if (fresh && fresh->expires && *fresh->expires <= now)
      return provider->name() + " returned credentials that expired at " +
             internal::FormatIso8601(*fresh->expires);
    return {};
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mutex);
    while (!stopping) {
      if (!next_refresh) {
        wake.wait(lock, [&] { return stopping || next_refresh.has_value(); });
        continue;
      }
      WallTime now = Now();
      if (now < *next_refresh) {
        wake.wait_for(lock, *next_refresh - now);
        continue;  // timed out, stop request or spurious: re-examine
      }
      lock.unlock();
      std::string why;
      std::optional<Credentials> fresh = provider->fetch(FetchDeadline(), &why);
      lock.lock();
      now = Now();
      std::string unusable = Unusable(fresh, now);
      if (fresh && unusable.empty()) {
        Install(std::move(*fresh), now);
        if (credentials->expires) {
          spdlog::info("AWS credentials: refreshed from {}; they expire at {}", provider->name(),
                       internal::FormatIso8601(*credentials->expires));
        } else {
          spdlog::info("AWS credentials: refreshed from {}; they do not expire", provider->name());
        }
      } else {
        Failed(fresh ? unusable : why, now);
      }
    }
  }
};

CredentialCache::CredentialCache(std::unique_ptr<CredentialProvider> provider, Options options)
    : impl_(std::make_unique<Impl>()) {
  impl_->provider = std::move(provider);
  impl_->options = std::move(options);
}

CredentialCache::~CredentialCache() {
  {
    std::lock_guard<std::mutex> guard(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  // Waits for a refresh in progress, which its deadline (fetch_timeout) bounds.
  if (impl_->refresher.joinable()) impl_->refresher.join();
}

bool CredentialCache::start(std::string* why) {
  {
    std::lock_guard<std::mutex> guard(impl_->mutex);
    if (impl_->refresher.joinable()) return true;
  }
  std::string reason;
  std::optional<Credentials> fresh = impl_->provider->fetch(impl_->FetchDeadline(), &reason);
  WallTime now = impl_->Now();
  if (fresh) reason = impl_->Unusable(fresh, now);
  if (!fresh || !reason.empty()) {
    if (why) *why = reason.empty() ? "no credentials" : reason;
    return false;
  }
  std::lock_guard<std::mutex> guard(impl_->mutex);
  impl_->Install(std::move(*fresh), now);
  if (impl_->credentials->expires) {
    spdlog::debug("AWS credentials from {}; they expire at {}", impl_->provider->name(),
                  internal::FormatIso8601(*impl_->credentials->expires));
  } else {
    spdlog::debug("AWS credentials from {}", impl_->provider->name());
  }
  impl_->refresher = std::thread([impl = impl_.get()] { impl->Run(); });
  return true;
}

std::optional<Credentials> CredentialCache::current() const {
  std::shared_ptr<const Credentials> held;
  {
    std::lock_guard<std::mutex> guard(impl_->mutex);
    held = impl_->credentials;
  }
  if (!held) return std::nullopt;
  if (held->expires && impl_->Now() >= *held->expires) return std::nullopt;
  return *held;
}

}  // namespace leasefs::aws
