// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title ERC-8004 reputation registry for the local devnet.
/// @notice Emits the deployed v1 events byte for byte. Input checks are deliberately light (the
/// agent must exist, valueDecimals <= 18) so that tests can exercise extreme values; in
/// particular an agent's owner may give it feedback. `giveLegacyFeedback` emits the NewFeedback
/// event of the earlier testnet ABI (another topic0), for testing that decoder on real logs.
/// The `*Batch` functions emit many events per transaction for benchmarks.
/// Rebuild the artifacts with `npm run build:contracts` after editing this file.
interface IIdentityRegistry {
    function ownerOf(uint256 tokenId) external view returns (address);
}

contract ReputationRegistry {
    struct Feedback {
        int128 value;
        uint8 valueDecimals;
        bool isRevoked;
        string tag1;
        string tag2;
    }

    struct FeedbackInput {
        uint256 agentId;
        int128 value;
        uint8 valueDecimals;
        string tag1;
        string tag2;
        string endpoint;
        string feedbackURI;
        bytes32 feedbackHash;
    }

    struct ResponseInput {
        uint256 agentId;
        address clientAddress;
        uint64 feedbackIndex;
        string responseURI;
        bytes32 responseHash;
    }

    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        int128 value,
        uint8 valueDecimals,
        string indexed indexedTag1,
        string tag1,
        string tag2,
        string endpoint,
        string feedbackURI,
        bytes32 feedbackHash
    );
    event FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex);
    event ResponseAppended(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        address indexed responder,
        string responseURI,
        bytes32 responseHash
    );
    /// @notice The earlier testnet ABI's feedback event (a 0-100 score and bytes32 tags).
    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint8 score,
        bytes32 indexed tag1,
        bytes32 tag2,
        string fileuri,
        bytes32 filehash
    );

    address private immutable _identityRegistry;
    mapping(uint256 agentId => mapping(address client => uint64)) private _lastIndex;
    mapping(uint256 agentId => mapping(address client => mapping(uint64 index => Feedback))) private _feedback;

    constructor(address identityRegistry_) {
        require(identityRegistry_ != address(0), "bad identity registry");
        _identityRegistry = identityRegistry_;
    }

    // -- feedback ----------------------------------------------------------------------------

    function giveFeedback(
        uint256 agentId,
        int128 value,
        uint8 valueDecimals,
        string calldata tag1,
        string calldata tag2,
        string calldata endpoint,
        string calldata feedbackURI,
        bytes32 feedbackHash
    ) external {
        uint64 index = _store(agentId, value, valueDecimals, tag1, tag2);
        emit NewFeedback(
            agentId, msg.sender, index, value, valueDecimals, tag1, tag1, tag2, endpoint, feedbackURI, feedbackHash
        );
    }

    /// @notice Devnet only: giveFeedback for each item, from the caller.
    function giveFeedbackBatch(FeedbackInput[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            FeedbackInput calldata f = items[i];
            uint64 index = _store(f.agentId, f.value, f.valueDecimals, f.tag1, f.tag2);
            emit NewFeedback(
                f.agentId,
                msg.sender,
                index,
                f.value,
                f.valueDecimals,
                f.tag1,
                f.tag1,
                f.tag2,
                f.endpoint,
                f.feedbackURI,
                f.feedbackHash
            );
        }
    }

    function _store(uint256 agentId, int128 value, uint8 valueDecimals, string calldata tag1, string calldata tag2)
        private
        returns (uint64 index)
    {
        _requireAgent(agentId);
        require(valueDecimals <= 18, "valueDecimals > 18");
        index = _lastIndex[agentId][msg.sender] + 1;
        _lastIndex[agentId][msg.sender] = index;
        Feedback storage feedback = _feedback[agentId][msg.sender][index];
        feedback.value = value;
        feedback.valueDecimals = valueDecimals;
        if (bytes(tag1).length > 0) {
            feedback.tag1 = tag1;
        }
        if (bytes(tag2).length > 0) {
            feedback.tag2 = tag2;
        }
    }

    /// @notice Devnet only: the earlier testnet ABI's feedback, emitted as that ABI's event.
    function giveLegacyFeedback(
        uint256 agentId,
        uint8 score,
        bytes32 tag1,
        bytes32 tag2,
        string calldata fileuri,
        bytes32 filehash
    ) external {
        _requireAgent(agentId);
        require(score <= 100, "score > 100");
        emit NewFeedback(agentId, msg.sender, score, tag1, tag2, fileuri, filehash);
    }

    // -- revocations -------------------------------------------------------------------------

    function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external {
        _revoke(agentId, feedbackIndex);
    }

    /// @notice Devnet only: revokeFeedback for each (agentId, feedbackIndex) pair.
    function revokeFeedbackBatch(uint256[] calldata agentIds, uint64[] calldata feedbackIndexes) external {
        require(agentIds.length == feedbackIndexes.length, "length mismatch");
        for (uint256 i; i < agentIds.length; ++i) {
            _revoke(agentIds[i], feedbackIndexes[i]);
        }
    }

    function _revoke(uint256 agentId, uint64 feedbackIndex) private {
        require(feedbackIndex > 0 && feedbackIndex <= _lastIndex[agentId][msg.sender], "no such feedback");
        Feedback storage feedback = _feedback[agentId][msg.sender][feedbackIndex];
        require(!feedback.isRevoked, "already revoked");
        feedback.isRevoked = true;
        emit FeedbackRevoked(agentId, msg.sender, feedbackIndex);
    }

    // -- responses ---------------------------------------------------------------------------

    function appendResponse(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        string calldata responseURI,
        bytes32 responseHash
    ) external {
        _respond(agentId, clientAddress, feedbackIndex);
        emit ResponseAppended(agentId, clientAddress, feedbackIndex, msg.sender, responseURI, responseHash);
    }

    /// @notice Devnet only: appendResponse for each item, from the caller.
    function appendResponseBatch(ResponseInput[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            ResponseInput calldata r = items[i];
            _respond(r.agentId, r.clientAddress, r.feedbackIndex);
            emit ResponseAppended(
                r.agentId, r.clientAddress, r.feedbackIndex, msg.sender, r.responseURI, r.responseHash
            );
        }
    }

    function _respond(uint256 agentId, address clientAddress, uint64 feedbackIndex) private view {
        require(feedbackIndex > 0 && feedbackIndex <= _lastIndex[agentId][clientAddress], "no such feedback");
    }

    // -- reads -------------------------------------------------------------------------------

    function getIdentityRegistry() external view returns (address) {
        return _identityRegistry;
    }

    function getLastIndex(uint256 agentId, address clientAddress) external view returns (uint64) {
        return _lastIndex[agentId][clientAddress];
    }

    function readFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        external
        view
        returns (int128 value, uint8 valueDecimals, string memory tag1, string memory tag2, bool isRevoked)
    {
        require(feedbackIndex > 0 && feedbackIndex <= _lastIndex[agentId][clientAddress], "no such feedback");
        Feedback storage feedback = _feedback[agentId][clientAddress][feedbackIndex];
        return (feedback.value, feedback.valueDecimals, feedback.tag1, feedback.tag2, feedback.isRevoked);
    }

    function getVersion() external pure returns (string memory) {
        return "devnet-1";
    }

    function _requireAgent(uint256 agentId) private view {
        try IIdentityRegistry(_identityRegistry).ownerOf(agentId) returns (address owner) {
            require(owner != address(0), "agent does not exist");
        } catch {
            revert("agent does not exist");
        }
    }
}
